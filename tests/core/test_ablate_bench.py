"""The ablation benchmark: each variant trains on the run's training people minus a validation split, is kept on
disk as it finishes, and a second call resumes instead of training it again; a pairing variant trains on more
pairs of the same conversations and is scored on the same validation pairs."""

import json
import os
import subprocess
import sys

import pytest

from bench import ablate


def run_ablate(tiny_model_path, out, variants: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "ablate", "--people", "4", "--conversations", "4", "--max-steps", "1",
         "--variants", variants, "--out", str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "BASE_MODEL": str(tiny_model_path), "PYTHONUNBUFFERED": "1"})
    text = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in text, text[-3000:]
    return text


def test_variants_are_kept_resumed_and_a_pairing_variant_keeps_the_validation_pairs(tiny_model_path, tmp_path):
    out = tmp_path / "ablate"
    run_ablate(tiny_model_path, out, "defaults,pairing-all@+1")
    rows = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(rows) == {"defaults", "pairing-all@+1"}
    defaults, pairing = rows["defaults"], rows["pairing-all@+1"]
    assert pairing["pairs"] > defaults["pairs"]  # 4 rated candidates: 6 ordered pairs a turn, not 3
    assert pairing["validation"]["all"]["n"] == defaults["validation"]["all"]["n"] > 0
    assert pairing["about"].endswith("training seed +1") and pairing["steps"] == defaults["steps"] == 1
    again = run_ablate(tiny_model_path, out, "defaults,pairing-all@+1")
    assert "defaults: finished before, kept" in again and "pairing-all@+1: finished before, kept" in again
    assert "| pairing-all@+1 |" in again and "| defaults |" in again


@pytest.mark.parametrize("variant, ok", [("defaults", True), ("lr-user-x4@+2", True), ("nothing", False),
                                         ("defaults@+x", False), ("defaults@+", False)])
def test_variant_names_with_a_seed_offset(variant, ok):
    assert ablate.known(variant) is ok
