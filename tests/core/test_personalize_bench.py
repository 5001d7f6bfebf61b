"""The personalization benchmark drives the dashboard's own path (population, runs with baselines and seeds, the
worker's training and evaluation functions, the report): one whole run on the tiny model, in its own process
(it sets up its own database, as a benchmark does)."""

import os
import subprocess
import sys


def test_the_benchmark_trains_evaluates_and_prints_the_pooled_report(tiny_model_path, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench", "personalize", "--model", str(tiny_model_path), "--people", "4",
         "--conversations", "3", "--steps", "1", "--seeds", "2", "--tokens", "4", "--prompts-per-person", "1",
         "--dimension", "format+length", "--keep", str(tmp_path / "bench")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text[-3000:]
    assert "runs 1, 3; 8 prompts judged, 0 waiting for their person" in text, text[-3000:]
    assert "| format:lists+length:detailed | 3 (75%) |" in text and "| format:prose+length:concise | 1 (25%) |" in text
    assert "seed 0 (run 1):" in text and "seed 1 (run 3):" in text
    assert "own vectors' replies preferred over plain DPO's" in text  # the figures' table
