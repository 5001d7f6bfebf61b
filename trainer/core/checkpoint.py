"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the trainable weights (adapter + user model), optimizer and
scheduler state, every RNG state, the step, the metric history, the reference
cache and the run's config. Each is written to a temporary folder and renamed
into place; ``latest`` names the newest complete one, so a crash while saving
leaves the previous checkpoint untouched.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

LATEST = "latest"


def trainable_state(core) -> dict[str, torch.Tensor]:
    """Only what training changes: parameters that require grad (adapter, user model)."""
    return {n: p.detach().cpu().clone() for n, p in core.named_parameters() if p.requires_grad}


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: Path, step: int, state: dict) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"step-{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=folder))
    try:
        torch.save(state, tmp / "state.pt")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    pointer = folder / f".{LATEST}.tmp"
    pointer.write_text(target.name)
    os.replace(pointer, folder / LATEST)
    return target


def latest_checkpoint(folder: Path | None) -> Path | None:
    if folder is None or not (Path(folder) / LATEST).is_file():
        return None
    path = Path(folder) / (Path(folder) / LATEST).read_text().strip()
    return path if (path / "state.pt").is_file() else None


def load_checkpoint(path: Path) -> dict:
    # Our own files: RNG states and the config dict need full unpickling.
    return torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=False)
