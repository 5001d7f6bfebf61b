"""Win-rates with ties as half and their exact bootstrap interval, against numbers worked out by hand; the hidden
rule as a judge on literal texts."""

import math

import pytest

from trainer.core.winrate import bootstrap_interval, outcome, win_rate
from users.synthetic.rule import Persona, features, judge_outcome


def test_ties_count_half():
    result = win_rate([1.0, 0.5, 0.5, 0.0, 1.0])
    assert (result.wins, result.ties, result.losses, result.n) == (2, 2, 1, 5)
    assert result.rate == pytest.approx((2 + 2 / 2) / 5)  # 0.6
    assert [outcome(70, 40), outcome(55, 55), outcome(10, 90)] == [1.0, 0.5, 0.0]


def test_the_interval_of_two_outcomes_is_the_resampling_worked_out_by_hand():
    # [win, tie]: a resample of two draws sums to 2, 3 or 4 half-points with probability 1/4, 1/2, 1/4, so
    # its mean is 0.5, 0.75 or 1 with cumulative probability 0.25, 0.75, 1.
    assert bootstrap_interval(1, 1, 0) == (0.5, 1.0)  # 2.5 % falls in 0.5, 97.5 % in 1
    assert bootstrap_interval(1, 1, 0, level=0.5) == (0.5, 0.75)  # the quartiles: exactly 0.25 -> 0.5; 0.75
    assert win_rate([1.0, 0.5]).rate == 0.75


def test_the_interval_of_three_outcomes():
    # [win, win, loss]: the number of wins in a resample is Binomial(3, 2/3): P = 1/27, 6/27, 12/27, 8/27 for
    # means 0, 1/3, 2/3, 1 (cumulative 0.037, 0.259, 0.704, 1). 2.5 % -> 0 and 97.5 % -> 1; the 20 % / 80 %
    # quantiles (level 0.6) -> 1/3 and 1; the 30 % / 70 % ones (level 0.4) both -> 2/3.
    assert bootstrap_interval(2, 0, 1) == (0.0, 1.0)
    assert bootstrap_interval(2, 0, 1, level=0.6) == (pytest.approx(1 / 3), 1.0)
    assert bootstrap_interval(2, 0, 1, level=0.4) == (pytest.approx(2 / 3), pytest.approx(2 / 3))


def test_a_large_sample_matches_the_normal_approximation():
    # 70 wins in 100: the mean's standard error is sqrt(0.7 * 0.3 / 100) = 0.0458, so about 0.70 +- 0.09.
    result = win_rate([1.0] * 70 + [0.0] * 30)
    assert result.low == pytest.approx(0.61, abs=0.011) and result.high == pytest.approx(0.79, abs=0.011)
    assert result.text() == "70% [61, 79], n=100"


def test_unanimous_outcomes_have_no_spread_and_nothing_judged_has_no_rate():
    assert win_rate([1.0] * 8).to_dict() | {} == {"rate": 1.0, "low": 1.0, "high": 1.0, "n": 8, "wins": 8,
                                                   "ties": 0, "losses": 0}
    assert win_rate([]).rate is None and win_rate([]).text() == "no judgements"
    with pytest.raises(ValueError, match="1 \\(win\\), 0.5 \\(tie\\) or 0"):
        win_rate([0.7])


def test_the_hidden_rule_judges_literal_texts():
    lists = Persona("u1", "format:lists", {"format": 1.0}, noise=0.0)
    concise = Persona("u2", "length:concise", {"length": -1.0}, noise=0.0)
    bullets, prose = "- eat well\n- sleep early\n- walk daily", "Eat well, sleep early and walk daily."
    assert features(bullets)["format"] == 1.0 and features(prose)["format"] == -1.0
    assert judge_outcome(lists, bullets, prose) == 1.0 and judge_outcome(lists, prose, bullets) == 0.0
    assert judge_outcome(lists, prose, "Rest, then eat, then walk.") == 0.5  # both plain prose: a tie
    long = "Sleep matters because " + "your body repairs itself at night and " * 20 + "so rest."
    assert judge_outcome(concise, "Sleep early.", long) == 1.0
    assert judge_outcome(concise, "Sleep early.", "Rest more.") == 0.5  # both under 8 words: saturated


def test_the_wilson_interval_of_a_held_out_accuracy_against_numbers_worked_out_by_hand():
    from trainer.core.winrate import wilson

    # 30 of 40: centre (0.75 + 1.96²/80) / (1 + 1.96²/40) = 0.7281; half-width 0.1300
    low, high = wilson(0.75, 40)
    assert round(low, 4) == 0.5981 and round(high, 4) == 0.8581
    assert wilson(1.0, 10)[1] == pytest.approx(1.0) and wilson(0.0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert all(math.isnan(x) for x in wilson(0.5, 0))
