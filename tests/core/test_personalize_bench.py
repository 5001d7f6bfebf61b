"""The personalization benchmark drives the dashboard's own path (population, runs with baselines and seeds, the
worker's training and evaluation functions, the report): one whole run on the tiny model, in its own process
(it sets up its own database, as a benchmark does)."""

import os
import subprocess
import sys

import pytest

from bench import personalize
from users.synthetic.personas import sample_population


def test_the_benchmark_trains_evaluates_and_prints_the_pooled_report(tiny_model_path, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench", "personalize", "--model", str(tiny_model_path), "--people", "4",
         "--conversations", "3", "--steps", "1", "--seeds", "2", "--tokens", "4", "--prompts-per-person", "1",
         "--dimension", "two+sides", "--keep", str(tmp_path / "bench")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text[-3000:]
    assert "(two+sides: format+length contested, side weight 0.5, 70 % / 30 %)" in text, text[-3000:]
    assert "runs 1, 3; 8 prompts judged, 0 waiting for their person" in text, text[-3000:]
    assert "| format:lists+length:detailed | 3 (75%) |" in text and "| format:prose+length:concise | 1 (25%) |" in text
    assert "seed 0 (run 1):" in text and "seed 1 (run 3):" in text
    assert "own vectors' replies preferred over plain DPO's" in text  # the figures' table


def test_the_benchmark_defaults_to_twenty_people_in_three_seeds():
    args = personalize.parse_args([])
    assert (args.people, args.seeds, args.dimension) == (20, 3, "length")
    groups = [p.group for p in sample_population(args.people, seed=0, **personalize.population_options(args))]
    assert (groups.count("length:detailed"), groups.count("length:concise")) == (14, 6)


def test_the_population_with_side_tastes_is_selectable_and_has_twenty_people_split_14_6():
    args = personalize.parse_args(["--dimension", "two+sides"])
    people = sample_population(args.people, seed=0, **personalize.population_options(args))
    groups = [p.group for p in people]
    assert (groups.count("format:lists+length:detailed"), groups.count("format:prose+length:concise")) == (14, 6)
    assert all(abs(p.prefs["register"]) >= 0.25 and abs(p.prefs["tone"]) >= 0.25 for p in people)  # side 0.5
    assert "register" not in sample_population(20, seed=0, **personalize.population_options(
        personalize.parse_args(["--dimension", "format+length"])))[0].prefs  # the earlier populations stay as they were
    with pytest.raises(SystemExit):
        personalize.parse_args(["--dimension", "three+sides"])
