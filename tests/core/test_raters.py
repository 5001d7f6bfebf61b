"""Rater quality on simulated people: careful raters of two opposing groups among careless ones (one score for
everything, random scores, ratings saved faster than anyone reads); the flags find every careless one and no
careful one, and the figures say why."""

import random

from bench.pairing import rated_turns
from users.raters import RatedTurn, rater_quality
from users.synthetic.personas import sample_population

PROMPTS = ["How do I start running?", "Explain how vaccines work.", "What should I cook tonight?",
           "How can I sleep better?"]


def simulated(seed: int = 0) -> dict:
    careful = sample_population(8, dimension="length", majority_pole="detailed", majority_share=0.7, seed=seed)
    people = {}
    for turn in rated_turns(careful, PROMPTS, 12, seed + 1):
        texts, scores = [t for t, _, _ in turn["candidates"]], [s for _, s, _ in turn["candidates"]]
        words = sum(len(t.split()) for t in texts)
        group, turns = people.setdefault(turn["persona"].user_id, (turn["persona"].group, []))
        turns.append(RatedTurn(texts, scores, seconds=words / 4.0))  # reading at 4 words a second
    rng = random.Random(seed)
    template = next(iter(people.values()))[1]
    people["careless-same"] = (None, [RatedTurn(t.texts, [50] * len(t.texts), t.seconds) for t in template])
    people["careless-random"] = (None, [RatedTurn(t.texts, [rng.randint(1, 100) for _ in t.texts], t.seconds)
                                        for t in template])
    people["careless-fast"] = ("length:detailed", [RatedTurn(t.texts, t.scores, seconds=1.0) for t in template])
    return people


def test_the_flags_find_every_careless_rater_and_no_careful_one():
    rows = {r.person: r for r in rater_quality(simulated())}
    flagged = {person for person, r in rows.items() if r.flags}
    assert flagged == {"careless-same", "careless-random", "careless-fast"}
    assert rows["careless-same"].flags == ["one score"] and rows["careless-same"].spread == 0
    assert rows["careless-random"].flags == ["no pattern"]
    assert rows["careless-fast"].flags == ["faster than reading"] and rows["careless-fast"].words_per_second > 20
    careful = [r for r in rows.values() if not r.person.startswith("careless")]
    assert all(r.consistency > 0.8 and r.agreement > 0.8 for r in careful), [(r.consistency, r.agreement)
                                                                               for r in careful]
    assert rows["careless-random"].consistency < 0.6
    assert list(rows)[:3] == sorted(flagged)  # flagged first


def test_the_figures_of_one_person_are_worked_out_from_their_ratings():
    turns = [RatedTurn(["a b", "c d e f"], [90, 90], seconds=3.0), RatedTurn(["a", "b c"], [15, 95], seconds=None)]
    (row,) = rater_quality({"p": (None, turns)})
    assert (row.ratings, row.turns, row.pairs, row.timed_turns) == (4, 2, 1, 1)
    assert row.mean == 72.5 and row.histogram == [0, 1, 0, 0, 0, 0, 0, 0, 2, 1]
    assert row.tie_share == 0.5 and row.seconds_per_turn == 3.0 and row.words_per_second == 2.0
    assert row.consistency is None or 0 <= row.consistency <= 1
    assert row.agreement is None and row.flags == []  # nobody to agree with, too few ratings to flag
