"""Checkpoint files: only the newest two are kept, and reading one cannot run code."""

import pickle
from pathlib import Path

import pytest
import torch

from tests.core.conftest import fast_config, small_pairs
from trainer.core.checkpoint import KEEP, latest_checkpoint, load_checkpoint, save_checkpoint
from trainer.core.loop import train


def _quiet(*_):
    pass


def test_a_run_keeps_only_its_newest_checkpoints_and_resumes_from_them(tiny_model_path, tmp_path):
    config = fast_config(epochs=2.0, checkpoint_every=1)  # 6 steps, a checkpoint after each but the last

    def crash(step, total, metrics):
        if step == 5:
            raise KeyboardInterrupt("simulated crash after step 5")

    with pytest.raises(KeyboardInterrupt):
        train(config, str(tiny_model_path), small_pairs(), checkpoint_dir=tmp_path, progress=crash, log=_quiet)
    kept = sorted(p.name for p in tmp_path.glob("step-*"))
    assert KEEP == 2 and kept == ["step-0000004", "step-0000005"]
    state = load_checkpoint(latest_checkpoint(tmp_path))  # loads with weights_only, RNG states included
    assert state["step"] == 5 and isinstance(state["rng"][0]["numpy"]["keys"], torch.Tensor)
    resumed = train(config, str(tiny_model_path), small_pairs(), checkpoint_dir=tmp_path, log=_quiet)
    assert resumed.status == "completed" and len(resumed.history) == 6


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_unread(tmp_path):
    marker = tmp_path / "ran"
    target = save_checkpoint(tmp_path / "ckpt", 1, {"step": 1, "x": torch.zeros(2)})
    torch.save({"step": 1, "evil": _Payload(marker)}, target / "state.pt")
    with pytest.raises(pickle.UnpicklingError, match="not loaded: start the run again in a new folder"):
        load_checkpoint(target)
    assert not marker.exists()
