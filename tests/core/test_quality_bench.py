"""The personalized-generation quality benchmark: its judging and one whole run on the tiny model."""

import json
import re

import pytest

from bench import quality as personal_quality
from users.synthetic.rule import Persona

LONG = "Here is a detailed answer with many words. " * 20
SHORT = "Yes, briefly."


def test_report_counts_a_win_only_where_the_persons_rule_prefers_their_own_reply(capsys):
    people = [Persona("a", "length:detailed", {"length": 1.0}), Persona("b", "length:concise", {"length": -1.0})]
    texts = {"personal": {("a", "p1"): LONG, ("a", "p2"): SHORT, ("b", "p1"): SHORT, ("b", "p2"): SHORT},
             "generic": {"p1": SHORT, "p2": LONG}, "base": {"p1": LONG, "p2": LONG}}
    personal_quality.report(people, [texts])
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in capsys.readouterr().out.splitlines() if line.startswith("| length:")}
    # a (wants detail): p1 long beats generic's short, ties base's long (a tie is no win); p2 short loses both.
    assert rows["length:detailed"][:3] == ["2", "50.0%", "0.0%"]
    # b (wants brevity): p1 short ties generic's short, beats base; p2 beats both.
    assert rows["length:concise"][:3] == ["2", "50.0%", "100.0%"]
    assert rows["length:detailed"][5].startswith(f"{(len(LONG.split()) + 2) / 2:.1f} / ")


def test_whole_runs_on_the_tiny_model_train_generate_and_report_both_groups(tiny_model_path, tmp_path, capsys):
    figures = personal_quality.main(["--model", str(tiny_model_path), "--users", "4", "--conversations", "2",
                                  "--held-out", "1", "--steps", "1", "--tokens", "4", "--max-length", "200",
                                  "--run-dir", str(tmp_path / "run"), "--seeds", "2"])
    out = capsys.readouterr().out
    assert {f.what.split(": ")[0] for f in figures} == {"length:concise", "length:detailed"}
    assert all((tmp_path / "run" / f"seed{s}" / "run.json").exists() for s in (0, 1))
    assert "length:concise, preferred over the generic vectors per training seed: " in out
    # 4 people x 1 own reply, plus one generic and one base reply per distinct prompt drawn (1 to 4 of them)
    generated = int(re.search(r"generated (\d+) replies", out).group(1))
    assert generated in {4 + 2 * k for k in range(1, 5)}
    groups = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| length:")]
    assert groups == ["length:concise", "length:detailed"]


def test_sampled_candidates_are_written_once_rated_by_each_user_and_shared_through_the_cache(tiny_model_path,
                                                                                           tmp_path, capsys):
    cache = tmp_path / "candidates.json"
    common = ["--model", str(tiny_model_path), "--users", "4", "--conversations", "2", "--held-out", "1",
              "--steps", "1", "--tokens", "6", "--max-length", "200", "--candidates", "sampled", "--samples", "3",
              "--candidates-cache", str(cache), "--device", "cpu"]
    assert personal_quality.main(common + ["--run-dir", str(tmp_path / "a")])  # returns its figures
    first = capsys.readouterr().out
    written = json.loads(cache.read_text())["candidates"]
    assert len(written) == 115 - 8 and all(len(replies) == 3 for replies in written.values())
    assert "321 sampled candidates, " in first and "training pairs of length:" in first
    assert personal_quality.main(common + ["--samples", "2", "--run-dir", str(tmp_path / "b")])
    assert "sampled candidates, " not in capsys.readouterr().out  # read from the cache, not generated again
    with pytest.raises(SystemExit, match="does not hold 5 sampled candidates"):
        personal_quality.main(common + ["--samples", "5", "--run-dir", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="holds candidates written with .*'tokens': 6.*, not .*'tokens': 7"):
        personal_quality.main(common + ["--tokens", "7", "--run-dir", str(tmp_path / "d")])


def test_several_training_seeds_are_pooled_and_each_seeds_share_is_printed(capsys):
    people = [Persona("a", "length:detailed", {"length": 1.0})]
    won = {"personal": {("a", "p1"): LONG, ("a", "p2"): LONG}, "generic": {"p1": SHORT, "p2": SHORT},
           "base": {"p1": SHORT, "p2": SHORT}}
    half = {**won, "personal": {("a", "p1"): LONG, ("a", "p2"): SHORT}}
    personal_quality.report(people, [won, half])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| length:detailed"))
    assert [c.strip() for c in row.split("|")[2:4]] == ["4", "75.0%"]
    assert "length:detailed, preferred over the generic vectors per training seed: 100.0%, 50.0%" in out
