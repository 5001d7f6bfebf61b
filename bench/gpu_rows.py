"""What ``python -m bench gpu`` measures and how: its rows, the device, the shapes' folders, peak memory, the
training settings of a row. Shared by the benchmark's parent and its measuring processes."""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path

from bench.figures import default_model
from bench.memory import proc_status
from trainer.core.memory import ModelShape

COUNTS = (1, 8, 32, 128)  # people served at once
REFIT_PAIRS = (10, 20)
TRAIN_STEPS = 3  # the first is a warm-up; pairs per second from the others
TRAIN_PEOPLE = 40
SERVE_TOKENS = 64
BUDGET_OUT = "not measured: the budget ran out"
BUNDLED_VOCAB = 49152  # the bundled tokenizer's, which every shape uses
# SmolLM2-135M-Instruct's config.json (tests/core/test_capacity.py reads the bundled folder's against it): its size
# without converting the bundled model, on a machine that has only the tokenizer.
BUNDLED_SHAPE = ModelShape(hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, vocab=BUNDLED_VOCAB,
                           tied=True)
BUNDLED_PARAMS = BUNDLED_SHAPE.params  # 134,515,008
# How far a run over several processes may put its loss curve from one process's, step by step. The runs see the
# same pairs in the same order with no dropout; they differ only in the order the micro-batches' gradients are
# added (and, in bf16, where those sums round). The DPO loss is about ln 2 = 0.69 over these few steps, so 1e-3 is
# 0.15 % of it: far above fp32's rounding (two CPU processes agreed to 6e-6, tests/core/test_multiprocess.py holds
# them to 1e-4), with room for bf16's. A lost or doubled micro-batch shows only where the curve itself moves by more
# than that: the row keeps how far one process's curve moved, which says whether this short run could show one.
LOSS_TOLERANCE = 1e-3


def train_rows(shape: str, on_gpu: bool) -> list[dict]:
    """The training settings measured for a shape, most telling first (the form's own default first)."""
    rows = []
    for loss in ("P-DPO", "DPO"):
        for bf16 in ((True, False) if on_gpu else (False, True)):
            for checkpointing in (False, True):
                rows.append({"id": f"{shape}/train/{loss}/{'bf16' if bf16 else 'fp32'}/"
                                   f"{'checkpointing' if checkpointing else 'plain'}",
                             "loss": loss, "bf16": bf16, "checkpointing": checkpointing})
    return rows


def loss_verdict(row: dict) -> bool | None:
    """Whether a several-process row's loss curve stood within LOSS_TOLERANCE of one process's (a row kept before
    the verdict was recorded is judged on its difference); None when it holds no curves."""
    if "loss_within_tolerance" in row:
        return row["loss_within_tolerance"]
    return row["loss_difference"] <= LOSS_TOLERANCE if row.get("loss_difference") is not None else None


def model_shape(name: str) -> ModelShape:
    """A shape's size from its config alone ("bundled" or an architecture of ``bench shapes``), never building it."""
    from bench import shapes

    return BUNDLED_SHAPE if name == "bundled" else shapes.model_shape(name, BUNDLED_VOCAB)


def serve_ids(shape: str) -> list[str]:
    return ([f"{shape}/merged"] + [f"{shape}/serve/{engine}/{n}" for engine in ("hf", "vllm") for n in COUNTS]
            + [f"{shape}/refit/{n}" for n in REFIT_PAIRS])


def process_counts(processes: int) -> list[int]:
    """The numbers of processes measured against one: 2 and all there are."""
    return sorted({2, processes}) if processes >= 2 else [2]


def multi_ids(shape: str, processes: int) -> list[str]:
    return [f"{shape}/processes/{n}" for n in process_counts(processes)]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def device_info() -> dict:
    import torch

    from trainer.core.hardware import describe_device

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {"device": "cuda", "kind": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(),
                "memory": props.total_memory, "describe": describe_device("cuda")}
    total = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    return {"device": "cpu", "kind": "cpu", "gpus": 0, "memory": total, "describe": describe_device("cpu")}


def shape_folder(name: str, device: str, tokenizer: str | None = None) -> str:
    from bench import shapes

    if name == "bundled":
        return default_model()
    return str(shapes.build(name, device="cuda" if device == "cuda" else "cpu", tokenizer_source=tokenizer))


class Peak:
    """The peak memory of what runs between ``start()`` and ``read()``: torch's allocations on a GPU, the
    resident-set high-water mark on a CPU (less ``held``, bytes this benchmark keeps that a run would not)."""

    def __init__(self, device: str, held: int = 0):
        self.device, self.held = device, held

    def now(self) -> int:
        import torch

        return torch.cuda.memory_allocated() if self.device == "cuda" else proc_status("VmRSS") - self.held

    def start(self) -> None:
        import torch

        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from now

    def read(self) -> int:
        import torch

        if self.device == "cuda":
            return torch.cuda.max_memory_allocated()
        return proc_status("VmHWM") - self.held


def emit(row: dict) -> None:
    print("ROW " + json.dumps(row), flush=True)


def train_config(row: dict, device: str, micro: int | None = None, steps: int = TRAIN_STEPS,
                 max_length: int | None = None):
    """The start form's defaults for ``device`` with ``row``'s loss, precision and checkpointing; ``max_length``
    (a quick check's) replaces the form's lengths, the prompt keeping the form's share of them."""
    from trainer.core.config import PLAIN_DPO, TrainConfig
    from trainer.core.presets import preset_values

    values = preset_values("paper" if device == "cuda" else "cpu")
    if max_length:
        form = TrainConfig.from_dict(values)
        values.update(max_length=max_length, max_prompt_length=max_length * form.max_prompt_length // form.max_length)
    config = TrainConfig.from_dict(values)
    micro = micro or config.micro_batch_size
    extra = PLAIN_DPO if row["loss"] == "DPO" else {}
    return TrainConfig.from_dict({**config.to_dict(), **extra, "micro_batch_size": micro, "batch_size": 2 * micro,
                                  "max_steps": steps, "warmup_steps": 0, "log_every": 1, "checkpoint_every": 0,
                                  "diagnostics_every": 0, "bf16": row["bf16"],
                                  "gradient_checkpointing": row["checkpointing"]})

