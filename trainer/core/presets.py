"""A run's settings from the command line: named starting points chosen by the device, NAME=VALUE
parsing, and what each setting means.

``paper`` is the paper's PRISM recipe (the ``TrainConfig`` defaults: batch 32,
micro-batch 8, 770 tokens, learning rates 5e-5, 150 warmup steps), sized for a
GPU. ``cpu`` is the recipe measured on the bundled SmolLM2-135M with two CPU
cores (the personalization benchmark's: batch 8, learning rates 1e-3 for the
LoRA and 5e-2 for the vectors, no warmup, no LoRA dropout) with micro-batches of
2 and 512 tokens, so a step stays within a few GB of memory. ``auto`` is ``cpu``
without CUDA and ``paper`` with it.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

from trainer.core.config import TrainConfig


class UsageError(ValueError):
    """A command cannot do what was asked; the message says what to give instead."""


PRESETS: dict[str, dict] = {
    "paper": {},
    "cpu": dict(batch_size=8, micro_batch_size=2, lr_lora=1e-3, lr_user=5e-2, warmup_steps=0, lora_dropout=0.0,
                max_length=512, max_prompt_length=320),
}
# Bookkeeping for runs started from the command line: a killed run keeps its work, and the curve is complete.
COMMAND_LINE = dict(log_every=1, checkpoint_every=10)


def preset_for_device(device: str = "auto") -> str:
    """The preset ``auto`` stands for on ``device`` ("auto", "cpu", "cuda", "cuda:1" ...)."""
    if device == "auto":
        import torch

        return "paper" if torch.cuda.is_available() else "cpu"
    return "cpu" if device.startswith("cpu") else "paper"


def preset_values(name: str, device: str = "auto") -> dict:
    """The settings a preset changes from the dataclass defaults."""
    if name == "auto":
        name = preset_for_device(device)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of auto, {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def setting_meanings() -> dict[str, str]:
    """Field name -> the comment written beside it in ``TrainConfig`` (one line each)."""
    meanings = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        match = re.match(r"\s{4}(\w+): [^=]+=.*?\s+#\s+(.+)$", line)
        if match:
            meanings[match.group(1)] = match.group(2).strip()
    return meanings


def settings_help(device: str = "auto") -> str:
    """Every setting with its default, the cpu preset's value where it differs, and its meaning."""
    meanings = setting_meanings()
    cpu = PRESETS["cpu"]
    lines = []
    for f in dataclasses.fields(TrainConfig):
        default = TrainConfig().to_dict()[f.name]
        shown = ",".join(default) if isinstance(default, list) else default
        extra = f" (cpu: {cpu[f.name]})" if f.name in cpu else ""
        lines.append(f"  {f.name}={shown}{extra}\n      {meanings.get(f.name, '')}")
    return "\n".join(lines)


def _coerce(field: dataclasses.Field, text: str):
    kind = str(field.type)
    if "list" in kind:
        return [t for t in text.split(",") if t]
    if "bool" in kind:
        if text.lower() in {"1", "true", "yes"}:
            return True
        if text.lower() in {"0", "false", "no"}:
            return False
        if text.lower() == "none" and "None" in kind:
            return None
        raise ValueError(f"{field.name} needs true or false, not {text!r}")
    if "int" in kind and "float" not in kind:
        return int(text)
    if "float" in kind:
        return float(text)
    return text


def parse_sets(settings: list[str]) -> dict:
    """``NAME=VALUE`` strings as typed TrainConfig values; an unknown name is refused with the valid ones."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values = {}
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise UsageError(f"--set {item!r}: expected NAME=VALUE with NAME one of: {', '.join(fields)} "
                             "(--help says what each means)")
        try:
            values[key] = _coerce(fields[key], text)
        except ValueError as exc:
            raise UsageError(f"--set {item!r}: {exc}") from None
    return values


def build_config(*, preset: str = "auto", sets: list[str] = (), steps: int | None = None,
                 command_line: bool = True) -> TrainConfig:
    """Dataclass defaults, then the preset, then the command line's bookkeeping, then ``--set``, then ``--steps``."""
    values = parse_sets(list(sets))
    try:
        chosen = preset_values(preset, values.get("device", "auto"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    merged = {**chosen, **(COMMAND_LINE if command_line else {}), **values}
    if steps is not None:
        if steps < 1:
            raise UsageError(f"--steps {steps}: give a positive number of optimizer steps")
        merged["max_steps"] = steps
    try:
        return TrainConfig(**merged)
    except ValueError as exc:
        raise UsageError(f"These settings do not go together: {exc}") from None


def preset_name(preset: str, config: TrainConfig) -> str:
    return preset_for_device(config.device) if preset == "auto" else preset
