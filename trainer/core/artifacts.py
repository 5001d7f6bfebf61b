"""A trained run on disk, and back: what generation and evaluation load.

    OUT/
      adapter/               peft LoRA adapter (adapter_config.json + safetensors)
      user_model.safetensors the user model's tensors (absent for plain DPO)
      users.json             user id -> row (row 0 = the generic user)
      config.json            the TrainConfig of the run
      metrics.json           training history, diagnostics, evaluation, anything the caller adds
      run.json               base model path, user-model kind and sizes

Written to a temporary folder next to OUT and renamed into place, so OUT is
either the complete previous version or the complete new one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from trainer.core.config import TrainConfig
from trainer.core.loop import load_base
from trainer.core.policy import PreferenceModel
from trainer.core.usermodel import ClusterUserModel, IndividualUserModel, UserIndex


def save_run(out: Path, core: PreferenceModel, user_index: UserIndex, config: TrainConfig, *, base_model: str,
             metrics: dict | None = None, files: dict[str, Callable[[Path], None]] | None = None) -> Path:
    """Write the run; ``files`` maps more file names to functions that write them (inside the same swap)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        core.lm.save_pretrained(tmp / "adapter")
        info = {"base_model": str(base_model), "user_model": None}
        if core.user_model is not None:
            um = core.user_model
            save_file({k: v.detach().cpu().contiguous() for k, v in um.state_dict().items()},
                      tmp / "user_model.safetensors")
            info["user_model"] = {"kind": um.kind, "n_users": um.n_users, "n_tokens": um.n_tokens,
                                  "hidden": um.hidden, "n_clusters": getattr(um, "components", torch.empty(0)).shape[0]}
        (tmp / "users.json").write_text(json.dumps(user_index.to_json(), indent=2))
        config.save(tmp / "config.json")
        (tmp / "metrics.json").write_text(json.dumps(metrics or {}, indent=2, default=str))
        (tmp / "run.json").write_text(json.dumps(info, indent=2))
        for name, write in (files or {}).items():
            write(tmp / name)
        old = None
        if out.exists():  # swap: the old version moves aside only once the new one is complete
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@dataclass
class LoadedRun:
    model: PreferenceModel  # eval mode; model.lm is the LM to generate with (peft-wrapped unless merged)
    tokenizer: object
    user_index: UserIndex
    config: TrainConfig
    metrics: dict
    path: Path

    @torch.no_grad()
    def soft_prompt(self, user_id: str | None) -> torch.Tensor | None:
        """(T_u, H) vectors for generation: the user's own, the generic ones for an unknown user, None for plain."""
        if self.model.user_model is None:
            return None
        row = torch.tensor([self.user_index.row(user_id)], device=next(self.model.parameters()).device)
        return self.model.user_model(row)[0]


def load_run(path: Path, *, base_model: str | None = None, device="cpu", merge: bool = False) -> LoadedRun:
    """Load a saved run; ``merge`` folds the LoRA into the base weights (faster serving, no adapter switch)."""
    path = Path(path)
    info = json.loads((path / "run.json").read_text())
    config = TrainConfig.load(path / "config.json")
    lm, tokenizer = load_base(base_model or info["base_model"])
    lm = PeftModel.from_pretrained(lm, path / "adapter")
    if merge:
        lm = lm.merge_and_unload()
    user_model = None
    if info["user_model"]:
        spec = info["user_model"]
        if spec["kind"] == "cluster":
            user_model = ClusterUserModel(spec["n_users"], spec["n_tokens"], spec["hidden"],
                                          n_clusters=spec["n_clusters"])
        else:
            user_model = IndividualUserModel(spec["n_users"], spec["n_tokens"], spec["hidden"])
        user_model.load_state_dict(load_file(path / "user_model.safetensors"))
    core = PreferenceModel(lm, user_model, tokenizer).to(device).eval()
    for p in core.parameters():
        p.requires_grad_(False)
    index = UserIndex.from_json(json.loads((path / "users.json").read_text()))
    metrics = json.loads((path / "metrics.json").read_text())
    return LoadedRun(core, tokenizer, index, config, metrics, path)


def save_vectors(target: Path, core: PreferenceModel, row: int, metadata: dict[str, str]) -> Path:
    """One person's (T, H) vectors (their row of the user model) as a safetensors file, written beside and
    renamed into place: a reader sees the old file or the new one, never half of one."""
    with torch.no_grad():
        vectors = core.user_model(torch.tensor([row]))[0].detach().cpu().contiguous()  # (T, H)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".fit-", suffix=".tmp")
    os.close(fd)
    try:
        save_file({"vectors": vectors}, tmp, metadata=metadata)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def base_model_here(path: Path, fallback: Callable[[], str] | None = None) -> str | None:
    """The base model a saved run loads on, here: the one it recorded, or ``fallback()`` when that was a folder
    that is not on this machine (trained elsewhere); None when it is gone and there is no fallback."""
    recorded = json.loads((Path(path) / "run.json").read_text())["base_model"]
    if recorded.startswith(("/", ".")) and not Path(recorded).exists():
        return fallback() if fallback is not None else None
    return recorded
