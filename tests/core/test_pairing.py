"""Pairing strategies on one turn's ratings, margin weights, and a weighted loss, worked by hand."""

import pytest
import torch
from torch.testing import assert_close

from trainer.core.data import DataError, Pair, pair_from_json
from trainer.core.losses import PairLogps, PairRefs, personalized_loss
from trainer.core.pairing import margin_weights, turn_pairs

# (reply, score, chosen) in display order: the chosen one is the best rated, as on the rating page.
TURN = [("a", 40, False), ("b", 90, True), ("c", 10, False), ("d", 40, False), ("e", None, False)]


def test_best_versus_rest_pairs_the_chosen_reply_with_each_lower_rated_one():
    assert turn_pairs(TURN, "best") == [("b", "a"), ("b", "c"), ("b", "d")]
    assert turn_pairs(TURN, "weighted") == turn_pairs(TURN, "best")
    assert turn_pairs(TURN, "best", min_margin=51) == [("b", "c")]


def test_all_ordered_pairs_adds_the_runners_up_against_the_lower_rated_and_skips_ties():
    assert turn_pairs(TURN, "all") == [("a", "c"), ("b", "a"), ("b", "c"), ("b", "d"), ("d", "c")]
    assert turn_pairs(TURN, "all", min_margin=31) == [("b", "a"), ("b", "c"), ("b", "d")]
    assert turn_pairs([("x", 50, True), ("y", 50, False)], "all") == []  # a tie says nothing


def test_an_unknown_strategy_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="best, all, weighted"):
        turn_pairs(TURN, "pairwise")


def test_margin_weights_are_the_margins_over_their_mean():
    assert margin_weights([50, 30, 10]) == pytest.approx([5 / 3, 1, 1 / 3])  # mean 30
    assert margin_weights([]) == []


def test_a_pairs_weight_round_trips_through_json_and_a_bad_one_names_its_line():
    pair = pair_from_json({"user_id": "u", "prompt": [{"role": "user", "content": "q"}],
                           "chosen": [{"role": "assistant", "content": "a"}],
                           "rejected": [{"role": "assistant", "content": "b"}], "weight": 1.5})
    assert pair.weight == 1.5 and pair.to_json()["weight"] == 1.5 and "weight" not in pair.extra
    plain = Pair("u", pair.prompt, pair.chosen, pair.rejected)
    assert "weight" not in plain.to_json()  # 1 is the default: files without weights stay as they were
    for bad in (0, -1, "2", True, float("nan")):
        with pytest.raises(DataError, match="pairs.jsonl:7: weight must be a positive number"):
            pair_from_json({**pair.to_json(), "weight": bad}, "pairs.jsonl:7")


def test_a_weighted_loss_is_each_pairs_loss_times_its_weight_averaged():
    policy = PairLogps(torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.5]))
    ref = PairRefs(torch.tensor([-1.5, -1.8]), torch.tensor([-2.5, -1.6]), torch.tensor([4.0, 4.0]),
                   torch.tensor([4.0, 4.0]))
    weights = torch.tensor([1.6, 0.4])
    loss, metrics = personalized_loss("dpo", None, policy, ref, alpha=0.0, beta=0.5, pair_weights=weights)
    margins = 0.5 * ((policy.chosen - ref.chosen) - (policy.rejected - ref.rejected))
    by_hand = (-torch.nn.functional.logsigmoid(margins) * weights).mean()
    assert_close(loss, by_hand)
    unweighted, _ = personalized_loss("dpo", None, policy, ref, alpha=0.0, beta=0.5)
    assert not torch.allclose(loss, unweighted)
    assert_close(metrics["loss/generic"], by_hand)


def test_the_benchmarks_population_gives_each_strategy_its_pairs():
    from bench.pairing import pairs_of, rated_turns
    from users.synthetic.personas import sample_population

    turns = rated_turns(sample_population(4, seed=0), ["How do I start running?"], 3, seed=1)
    best, every, weighted = (pairs_of(turns, s) for s in ("best", "all", "weighted"))
    assert 0 < len(best) <= 3 * len(turns) and len(best) < len(every) <= 6 * len(turns)
    assert [(p.chosen, p.rejected) for p in weighted] == [(p.chosen, p.rejected) for p in best]
    assert sum(p.weight for p in weighted) / len(weighted) == pytest.approx(1.0)
    assert all(p.score_chosen > p.score_rejected for p in every)
