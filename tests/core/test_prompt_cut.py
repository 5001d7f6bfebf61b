"""Cutting a long history to fit the prompt budget: the same cut as dropping one message at a time,
found with a number of templatings that grows with the log of the history, not with its length."""

import random

from bench.prompt_cut import one_at_a_time
from trainer.core import sequences
from trainer.core.sequences import encode_prompt


def conversation(rng, turns, system=True):
    messages = [{"role": "system", "content": "Be brief."}] if system else []
    for t in range(turns):
        messages.append({"role": "user", "content": f"q{t} " + "word " * rng.randint(0, 30)})
        if rng.random() < 0.9:  # now and then a turn whose reply failed: two user messages in a row
            messages.append({"role": "assistant", "content": f"a{t} " + "word " * rng.randint(0, 60)})
    messages.append({"role": "user", "content": "last " + "word " * rng.randint(0, 80)})
    return messages


def test_the_cut_is_the_one_dropping_one_message_at_a_time_would_make(tiny):
    _, tok = tiny
    rng = random.Random(5)
    for case in range(40):
        messages = conversation(rng, rng.randint(0, 12), system=case % 3 != 0)
        budget = rng.choice([30, 60, 120, 250, 600])
        expected_ids, expected_dropped = one_at_a_time(tok, messages, budget)
        got = encode_prompt(tok, messages, max_prompt_length=budget)
        assert (got.ids, got.messages_cut) == (expected_ids, expected_dropped), (case, budget)


def test_a_200_turn_history_is_templated_a_logarithmic_number_of_times(tiny, monkeypatch):
    _, tok = tiny
    messages = conversation(random.Random(1), 200)
    calls = []
    original = sequences._template_ids
    monkeypatch.setattr(sequences, "_template_ids", lambda *a, **k: calls.append(1) or original(*a, **k))
    got = encode_prompt(tok, messages, max_prompt_length=300)
    assert len(got.ids) <= 300 and got.messages_cut > 300
    assert len(calls) <= 12  # 1 for the whole history + about log2(400) bisection steps; dropping one at a time: ~390
