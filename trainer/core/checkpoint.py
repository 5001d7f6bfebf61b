"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the trainable weights (adapter + user model), optimizer and
scheduler state, every RNG state, the step, the metric history, the reference
cache and the run's config. Each is written to a temporary folder and renamed
into place; ``latest`` names the newest complete one, so a crash while saving
leaves the previous checkpoint untouched. Only the newest ``KEEP`` are kept (a run that checkpoints every
10 steps would otherwise fill the disk with copies of its optimizer state), and they are loaded with
``weights_only=True``: tensors and plain Python values only, so a checkpoint file cannot run code when it
is read. Everything in one (the RNG states included) is stored as such.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

LATEST = "latest"
KEEP = 2  # the newest checkpoint and the one before it


def trainable_state(core) -> dict[str, torch.Tensor]:
    """Only what training changes: parameters that require grad (adapter, user model)."""
    return {n: p.detach().cpu().clone() for n, p in core.named_parameters() if p.requires_grad}


def rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
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
    prune(folder)
    return target


def prune(folder: Path, keep: int = KEEP) -> None:
    """Remove all but the newest ``keep`` checkpoints of ``folder`` (never the one ``latest`` names)."""
    latest = (Path(folder) / LATEST).read_text().strip() if (Path(folder) / LATEST).is_file() else None
    done = sorted(p for p in Path(folder).glob("step-*") if p.is_dir())
    for old in done[:-keep] if keep > 0 else done:
        if old.name != latest:
            shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(folder: Path | None) -> Path | None:
    if folder is None or not (Path(folder) / LATEST).is_file():
        return None
    path = Path(folder) / (Path(folder) / LATEST).read_text().strip()
    return path if (path / "state.pt").is_file() else None


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's state: tensors and plain values only (``weights_only``), so reading one runs no code."""
    try:
        return torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise pickle.UnpicklingError(f"{path} holds more than tensors and plain values (written by an older "
                                     f"version, or not by this project), so it is not loaded: start the run "
                                     f"again in a new folder. {str(exc).splitlines()[0]}") from exc
