"""The same loop under `accelerate launch` with 2 CPU processes (DDP over gloo) gives the
single-process loss curve: each process takes half of every global batch and DDP averages
the gradients, which is what one process accumulating two micro-batches computes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from tests.core.conftest import fast_config, small_pairs
from trainer.core.data import split_pairs, write_pairs
from trainer.core.loop import train
from trainer.core.ports import free_port

SETTINGS = dict(lora_dropout=0.0, epochs=2.0)  # no dropout: the two layouts draw different random masks


@pytest.mark.slow
def test_two_process_ddp_run_matches_one_process(tiny_model_path, tmp_path):
    pairs = small_pairs()
    write_pairs(tmp_path / "pairs.jsonl", pairs)
    config = fast_config(**SETTINGS)
    sets = [f"--set={k}={v}" for k, v in config.to_dict().items() if k != "lora_target_modules" and v is not None]
    repo = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), "-m", "trainer.core.cli", "train",
           "--pairs", str(tmp_path / "pairs.jsonl"), "--model", str(tiny_model_path), "--out", str(tmp_path / "run"),
           "--unseen-fraction", "0", "--test-fraction", "0", *sets]
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]

    train_pairs = split_pairs(pairs, unseen_fraction=0, test_fraction=0, seed=config.seed).train
    single = train(config, str(tiny_model_path), train_pairs, log=lambda *_: None).history
    curve = lambda h: torch.tensor([[x["loss"], x["rewards/margins"], x["grad_norm"]] for x in h])  # noqa: E731
    assert len(ddp) == len(single) == 6
    assert_close(curve(ddp), curve(single), rtol=1e-4, atol=1e-5)
