"""The settings read off a run's data (trainer/core/defaults.py): each rule on numbers worked out by hand, and
the rules together reading the training conversations only."""

import math

import pytest

from trainer.core import defaults
from trainer.core.config import TrainConfig
from trainer.core.data import Pair, split_pairs
from trainer.core.defaults import (
    PairFact,
    choose,
    choose_for_pairs,
    learning_rates,
    min_margin_from_margins,
    passes_from_pairs,
    token_budget,
    token_lengths,
    user_model_size,
    with_margin,
)


def spread(first: int, last: int, times: int = 1) -> list[int]:
    return list(range(first, last + 1)) * times


# --- the margin filter ------------------------------------------------------------------------------------

def test_margins_that_only_thin_out_keep_every_pair():
    margins = spread(1, 10, 6) + spread(11, 20, 2) + spread(21, 25)  # bins of 10 points: 60, 20, 5
    # Bin 11-20 (20) has no larger bin after it; bin 21-30 (5) has none at all: no valley.
    choice = min_margin_from_margins(margins)
    assert choice.value == 1
    assert "no separate hump of rating noise near 0" in choice.reason and "every pair is kept" in choice.reason


def test_a_noise_hump_and_a_preference_hump_cut_at_the_valley():
    margins = spread(1, 10, 4) + [15] * 4 + [25] * 15 + [35] * 15 + [45] * 10  # bins: 40, 4, 15, 15, 10
    # Bin 11-20: 40 - 4 = 36 > 2 sqrt(44) = 13.3 and 15 - 4 = 11 > 2 sqrt(19) = 8.7: a valley.
    # Bin 21-30: 15 - 15 = 0 is no dip. The cut is the middle of 11-20; under it 40 + 4 of the 84 pairs.
    choice = min_margin_from_margins(margins)
    assert choice.value == 16
    assert choice.reason == ("pairs with a margin under 16 are within these people's rating noise (their margins "
                             "fall from a hump near 0 to a valley at 11-20, then rise again with the preferences): "
                             "52% of the 84 training pairs left out")


def test_wider_noise_puts_the_valley_further_out():
    margins = spread(1, 10, 3) + spread(11, 20, 2) + [25, 25] + [35] * 20  # bins: 30, 20, 2, 20
    # Bin 11-20: 20 - 20 = 0 after it, no dip. Bin 21-30: 30 - 2 = 28 > 2 sqrt(32) = 11.3 and
    # 20 - 2 = 18 > 2 sqrt(22) = 9.4: the valley, cut at 26 (30 + 20 + 2 of the 72 pairs are under it).
    choice = min_margin_from_margins(margins)
    assert choice.value == 26 and "valley at 21-30" in choice.reason and "72% of the 72" in choice.reason


def test_a_dip_no_deeper_than_chance_keeps_every_pair():
    margins = spread(1, 10, 4) + spread(11, 20, 2) + spread(21, 30, 2) + [25] * 6  # bins: 40, 20, 26
    # 40 - 20 = 20 > 2 sqrt(60) = 15.5, but 26 - 20 = 6 < 2 sqrt(46) = 13.6: chance.
    assert min_margin_from_margins(margins).value == 1


def test_too_few_pairs_keep_every_pair_whatever_their_margins():
    margins = [2] * 14 + [15] + [45] * 14  # 29 pairs, as clearly two humps as can be
    choice = min_margin_from_margins(margins)
    assert choice.value == 1 and choice.reason.startswith("only 29 training pairs with a score margin, too few")


def test_the_margin_filter_stays_within_its_bounds():
    low, high = defaults.MARGIN_BOUNDS
    for margins in ([3] * 50 + [90] * 50, [1] * 40, spread(1, 99), [28] * 40 + [60] * 40):
        assert low <= min_margin_from_margins(margins).value <= high


# --- the number of passes ---------------------------------------------------------------------------------

def test_passes_give_the_median_person_twenty_updates():
    choice, steps = passes_from_pairs([4, 6, 8, 10, 30], batch_size=8)
    # median 8 -> ceil(20 / 8) = 3 passes; 58 pairs x 3 / 8 = 21.75 -> 22 steps.
    assert (choice.value, steps) == (3.0, 22)
    assert choice.reason == ("22 steps of 8: each person's pairs seen 3 times, so a person with the median 8 "
                             "training pairs gives their vectors about 24 updates")


def test_prism_sized_people_get_the_papers_single_epoch_and_few_pairs_at_most_eight():
    choice, steps = passes_from_pairs([20, 25, 30], batch_size=32)
    assert (choice.value, steps) == (1.0, 3)  # ceil(20 / 25) = 1 pass; 75 / 32 -> 3 steps
    assert "each person's pairs seen once" in choice.reason
    assert passes_from_pairs([2, 2, 3], batch_size=8)[0].value == 8.0  # ceil(20 / 2) = 10, at most 8
    assert passes_from_pairs([], batch_size=8)[0].value == 1.0


def test_passes_are_cut_to_the_time_budget():
    choice, steps = passes_from_pairs([10] * 10, batch_size=8, seconds_per_step=60, budget_seconds=600)
    # 2 passes would be 100 x 2 / 8 = 25 steps of a minute; ten fit in ten minutes: 10 x 8 / 100 = 0.8 epochs.
    assert (choice.value, steps) == (0.8, 10)
    assert choice.reason.startswith("10 steps of 8, as many as fit in 10 minutes on this worker: each person's "
                                    "pairs seen about 0.8 times")
    assert TrainConfig(epochs=choice.value, batch_size=8, micro_batch_size=8).total_steps(100) == 10


@pytest.mark.parametrize("pairs,batch,steps", [(7, 8, 3), (1234, 32, 17), (95, 8, 1), (30001, 8, 999)])
def test_budget_epochs_make_exactly_the_steps_that_fit(pairs, batch, steps):
    epochs = defaults._epochs_for(steps, pairs, batch)
    assert TrainConfig(epochs=epochs, batch_size=batch, micro_batch_size=batch).total_steps(pairs) == steps


# --- learning rates and user-model size -------------------------------------------------------------------

def test_few_people_get_the_rates_measured_with_ten_and_prism_sized_ones_the_papers():
    for people in (3, 10):
        rates = learning_rates(people, hidden=576)
        assert (rates["lr_lora"].value, rates["lr_user"].value) == (1e-3, 8e-2)
    rates = learning_rates(100, hidden=576)  # the user vectors' rate holds up to 100 people
    assert rates["lr_user"].value == 8e-2 and "chosen on a validation split" in rates["lr_user"].reason
    for people in (1000, 5000):
        rates = learning_rates(people, hidden=4096)  # the paper's rates are never scaled
        assert (rates["lr_lora"].value, rates["lr_user"].value) == (5e-5, 5e-5)
        assert rates["lr_user"].reason == f"the paper's rate: {people} people is PRISM-sized"
    assert learning_rates(0) == {}


def test_rates_in_between_are_geometric_in_the_number_of_people():
    rates = learning_rates(100)  # the adapter's: t = log(10) / log(100) = 1/2
    assert rates["lr_lora"].value == 2.2e-4  # sqrt(1e-3 x 5e-5) = 2.236e-4
    assert "between the one for 10 or fewer and the paper's" in rates["lr_lora"].reason
    rates = learning_rates(316)  # the user vectors': t = log(3.16) / log(10) = 1/2
    assert rates["lr_user"].value == 2e-3  # sqrt(8e-2 x 5e-5) = 2.0e-3
    assert "between the one for 100 or fewer and the paper's" in rates["lr_user"].reason


def test_a_wider_model_scales_the_few_people_rates_down():
    rates = learning_rates(10, hidden=4 * 576)  # sqrt(576 / 2304) = 1/2
    assert (rates["lr_lora"].value, rates["lr_user"].value) == (5e-4, 4e-2)
    assert "scaled for a model of hidden size 2304" in rates["lr_lora"].reason
    assert learning_rates(10, hidden=64)["lr_lora"].value == 1e-3  # a narrower model is not scaled up


def test_clusters_are_one_per_two_people_between_one_and_ten():
    assert {p: user_model_size(p)["n_clusters"].value for p in (1, 3, 10, 19, 50)} == {1: 1, 3: 1, 10: 5, 19: 9,
                                                                                        50: 10}
    assert user_model_size(10)["n_user_tokens"].value == 10


# --- the evaluation's token budget ------------------------------------------------------------------------

def test_the_token_budget_fits_nine_in_ten_chosen_replies():
    choice = token_budget([10 * i for i in range(20, 0, -1)])  # 10 .. 200 tokens
    # Nearest rank: ceil(0.9 x 20) = 18th shortest = 180 tokens, rounded up to 16s: 192.
    assert choice.value == 192
    assert choice.reason == ("9 in 10 of the 20 replies these people chose are 180 tokens or shorter (the longest "
                             "200), so an evaluated reply has room to be as long")


def test_the_token_budget_is_bounded_and_falls_back_with_few_replies():
    assert token_budget([5] * 20).value == 64
    long = token_budget([1000] * 20)
    assert long.value == 512 and long.reason.startswith("the most allowed (512): ")
    few = token_budget([300] * 9)
    assert few.value == 96 and few.reason == "only 9 chosen replies to measure, so the fixed budget"


def test_token_lengths_use_the_models_tokenizer_or_estimate(tiny_model_path):
    from transformers import AutoTokenizer

    texts = ["Sleep at the same time every night.", "Keep the bedroom dark and cool, and skip caffeine."]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    counted, exact = token_lengths(texts, tiny_model_path)
    assert exact and counted == [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert token_lengths(["abcdefghi"], None) == ([3], False)  # 9 characters / 4, rounded up


# --- the rules together -----------------------------------------------------------------------------------

def population_pairs(people: int = 10, conversations: int = 8, noise=(2, 4, 6, 8), prefs=(35, 45, 55, 40)):
    """Each conversation: one turn, its chosen reply against one reply at the same pole (a noise margin) and two
    at the other (preference margins), so no conversation loses every pair under a margin filter up to 30."""
    pairs = []
    for u in range(people):
        for c in range(conversations):
            i = u * conversations + c
            chosen = [{"role": "assistant", "content": f"Reply {i} " + "word " * (5 + i % 40)}]
            for margin in (noise[i % len(noise)], prefs[i % len(prefs)], prefs[(i + 1) % len(prefs)]):
                pairs.append(Pair(f"p{u}", [{"role": "user", "content": f"Question {i}"}], chosen,
                                  [{"role": "assistant", "content": f"Other {i} {margin}"}],
                                  conversation_id=f"p{u}-c{c}", score_chosen=90, score_rejected=90 - margin))
    return pairs


SPLIT = {"unseen_fraction": 0.1, "test_fraction": 0.2, "seed": 42}


def test_the_steps_announced_are_the_steps_of_the_runs_own_split():
    pairs = population_pairs()
    chosen = choose_for_pairs(pairs, split=SPLIT, batch_size=8)
    margin = chosen.values["min_margin"]
    assert margin == 16  # noise margins 2-8 and preference margins 35-55: the valley is 11-20
    split = split_pairs(with_margin(pairs, margin), **SPLIT)
    assert chosen.train_pairs == len(split.train) and chosen.people == len(split.seen_users) == 9
    config = TrainConfig(epochs=chosen.values["epochs"], batch_size=8, micro_batch_size=8)
    assert chosen.steps == config.total_steps(len(split.train))
    # 9 seen people x 6 training conversations (2 of 8 held out) x 2 pairs over the filter: 12 each -> 2 passes.
    assert chosen.values["epochs"] == 2.0 and chosen.values["lr_user"] == 8e-2 and chosen.values["n_clusters"] == 4
    assert all(p.score_chosen - p.score_rejected >= 16 for p in split.train)


def test_held_out_conversations_change_nothing_that_is_chosen():
    pairs = population_pairs()
    split = split_pairs(with_margin(pairs, 16), **SPLIT)
    held_out = {p.conversation_id for p in split.test_seen + split.test_unseen}
    chosen = choose_for_pairs(pairs, split=SPLIT, batch_size=8)
    # Held-out conversations with other margins (none under 16 dropped: the split stays) and far longer replies.
    changed = [Pair(p.user_id, p.prompt, [{"role": "assistant", "content": "long " * 900}], p.rejected,
                    conversation_id=p.conversation_id, score_chosen=90,
                    score_rejected=90 - (60 if p.score_chosen - p.score_rejected >= 16 else 12))
               if p.conversation_id in held_out else p for p in pairs]
    assert split_pairs(with_margin(changed, 16), **SPLIT).train == split.train
    again = choose_for_pairs(changed, split=SPLIT, batch_size=8)
    assert again.values == chosen.values and again.reasons == chosen.reasons


def test_given_settings_are_used_and_not_chosen():
    pairs = population_pairs()
    chosen = choose_for_pairs(pairs, split=SPLIT, batch_size=8, given={"min_margin": 1, "max_steps": 5,
                                                                       "lr_user": 0.1})
    assert "min_margin" not in chosen.values and "epochs" not in chosen.values and "lr_user" not in chosen.values
    assert chosen.train_pairs == len(split_pairs(pairs, **SPLIT).train)  # every pair, as given
    plain = choose_for_pairs(pairs, split=SPLIT, batch_size=8, personalized=False)
    assert set(plain.values) == {"min_margin", "epochs", "lr_lora", "eval_max_new_tokens"}


def test_a_margin_that_never_settles_keeps_every_pair(monkeypatch):
    answers = iter([16, 26] * defaults.MARGIN_ROUNDS)
    monkeypatch.setattr(defaults, "min_margin_from_margins",
                        lambda margins: defaults.Choice(next(answers), "from the noise"))
    facts = [PairFact(f"p{u}", f"c{u}-{c}", 40, None) for u in range(4) for c in range(3)]
    chosen = choose(facts, split=SPLIT, batch_size=8)
    assert chosen.values["min_margin"] == 1 and "cannot be read off training pairs alone" in \
        chosen.reasons["min_margin"]


def test_the_rules_read_pairs_in_data_order_and_print_one_line_each():
    chosen = choose_for_pairs(population_pairs(), split=SPLIT, batch_size=8)
    lines = chosen.lines()
    assert lines[0].startswith("  min_margin=16: pairs with a margin under 16 are within these people's rating noise")
    assert lines[1].startswith("  epochs=2: ") and len(lines) == len(chosen.values) == 7
    assert math.isclose(chosen.values["eval_max_new_tokens"] % 16, 0)
