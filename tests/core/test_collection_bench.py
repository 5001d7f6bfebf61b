"""bench collection: the cut share and the choice of cap and penalty, worked by hand; the command on the tiny model."""

from bench.collection import choose, cut_share, main


def row(tokens: int, ended: bool, penalty: float = 1.0) -> dict:
    return {"tokens": tokens, "ended": ended, "penalty": penalty}


def test_a_candidate_counts_as_cut_at_every_cap_it_reaches():
    rows = [row(100, True), row(300, True), row(768, False), row(40, True)]
    assert cut_share(rows, 256) == 0.5  # 300 and the one that never ended
    assert cut_share(rows, 512) == 0.25
    assert cut_share(rows, 768) == 0.25


def test_the_smallest_cap_then_the_smallest_penalty_under_the_target_is_chosen():
    rows = ([row(600, True, 1.0)] * 19 + [row(900, False, 1.0)]  # 1.0: 5 % never end, 95 % need 768
            + [row(200, True, 1.2)] * 20)  # 1.2: all end by 256
    assert choose(rows, [256, 512, 768], [1.0, 1.2]) == (1.2, 256)
    assert choose([r for r in rows if r["penalty"] == 1.0], [256, 512, 768], [1.0]) == (1.0, 768)  # least cut


def test_the_command_runs_on_a_small_model_and_prints_every_cap(tiny_model_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    figures = main(["--model", str(tiny_model_path), "--prompts", "2", "--caps", "4,8", "--penalties", "1.0,1.3"])
    out = capsys.readouterr().out
    for penalty in ("1", "1.3"):
        for cap in (4, 8):
            assert f"| {penalty} | {cap} |" in out
    assert len(figures) == 2 and figures[1].target == "< 5%"
    assert list((tmp_path / "bench").glob("collection-*.json"))  # kept for a rerun
