"""bench newcomer on a tiny model: a version trained and kept, the pool prepared, newcomers of both groups
onboarded both ways, and every count of answers printed with the server time per answer; a second call
resumes from what the first kept."""

from bench.newcomer import COUNTS, main


def test_the_newcomer_benchmark_prints_the_curve_for_both_strategies_and_groups(tiny_model_path, tmp_path, capsys):
    args = ["--model", str(tiny_model_path), "--people", "4", "--conversations", "2", "--epochs", "0.5",
            "--newcomers", "1", "--pool", "10", "--held-out", "1", "--judge-prompts", "1", "--out", str(tmp_path)]
    figures = main(args)
    out = capsys.readouterr().out
    header = "| group | strategy | " + " | ".join(f"{n} answers" for n in COUNTS) + " | generic vectors |"
    assert header in out
    for group in ("length:detailed", "length:concise"):
        for strategy in ("adaptive", "random"):
            assert f"| {group} | {strategy} | " in out
    named = {f.what: f for f in figures}
    assert named["server time per answer, median"].met is True
    assert "onboarding pool prepared" in named and (tmp_path / "version-seed0" / "run.json").is_file()
    assert (tmp_path / "results-seed0.json").is_file()
    svg = (tmp_path / "curve-seed0.svg").read_text()
    assert svg.count("<polyline") == 4 and "concise, random" in svg and "target 85 %" in svg
    refits = [f for f in figures if "background refit" in f.what]
    assert len(refits) == 2 and all(f.met is not None for f in refits)
    assert "background refit from 10 answers in" in out
    again = main([*args, "--refits", "0"])  # a second call loads the kept version and the finished newcomers instead of redoing them
    out = capsys.readouterr().out
    assert "training step" not in out and out.count("(kept from an earlier run)") == 2
    assert [f.value for f in again if "held-out" in f.what] == [f.value for f in figures if "held-out" in f.what]
