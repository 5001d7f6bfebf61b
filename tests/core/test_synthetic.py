import random
from collections import Counter

import pytest

from users.synthetic.pairs import make_pairs, make_rated_pairs
from users.synthetic.personas import sample_population
from users.synthetic.replies import generate_reply
from users.synthetic.rule import (DIMENSIONS, LENGTH_WORDS_V1, features, judge_outcome, judge_prefers, score,
                                  style_instruction)


def test_population_has_exact_opposing_group_sizes():
    people = sample_population(10, dimension="length", majority_pole="detailed", majority_share=0.7, seed=1)
    groups = [p.group for p in people]
    assert groups.count("length:detailed") == 7 and groups.count("length:concise") == 3
    assert sample_population(10, seed=1) == sample_population(10, seed=1)


def test_a_population_can_be_opposed_on_two_dimensions_at_once():
    from users.synthetic.replies import contrasting_styles

    people = sample_population(10, dimension="format+length", majority_share=0.7, seed=3)
    groups = [p.group for p in people]
    assert groups.count("format:lists+length:detailed") == 7 and groups.count("format:prose+length:concise") == 3
    minority = next(p for p in people if p.group.startswith("format:prose"))
    assert minority.prefs == {"format": -1.0, "length": -1.0}
    styles = contrasting_styles(random.Random(0), "format+length", 4)
    assert {(s["format"], s["length"]) for s in styles} == {("prose", "concise"), ("lists", "concise"),
                                                             ("prose", "detailed"), ("lists", "detailed")}
    assert sample_population(10, seed=1) == sample_population(10, dimension="length", seed=1)


def test_generated_styles_are_measurable_at_both_poles():
    rng = random.Random(0)
    for dim in DIMENSIONS.values():
        low = features(generate_reply("How do I start running?", {dim.name: dim.poles[0]}, rng))[dim.name]
        high = features(generate_reply("How do I start running?", {dim.name: dim.poles[1]}, rng))[dim.name]
        assert low < 0 < high, dim.name


def test_hidden_rule_prefers_each_groups_pole():
    short = generate_reply("Why is the sky blue?", {"length": "concise"}, random.Random(0))
    long = generate_reply("Why is the sky blue?", {"length": "detailed"}, random.Random(0))
    fans_of_detail, fans_of_brevity = (next(p for p in sample_population(10, seed=0) if p.group == g)
                                       for g in ("length:detailed", "length:concise"))
    assert judge_prefers(fans_of_detail, long, short) and judge_prefers(fans_of_brevity, short, long)
    assert 1 <= score(fans_of_detail, short, random.Random(0)) < score(fans_of_detail, long, random.Random(0)) <= 100


def test_length_stays_distinguishable_across_chat_reply_lengths():
    fan_of_detail = next(p for p in sample_population(10, seed=0) if p.group == "length:detailed")
    medium, long = "word " * 130, "word " * 200
    assert judge_prefers(fan_of_detail, long, medium) and not judge_prefers(fan_of_detail, medium, long)
    # the first calibration saturated at 120 words: both replies tie, neither is preferred
    assert not judge_prefers(fan_of_detail, long, medium, length_words=LENGTH_WORDS_V1)
    # before rounding to 1-100: a two-word difference still counts
    assert judge_prefers(fan_of_detail, "word " * 42, "word " * 40)


def test_pairs_follow_each_users_rule_and_instructions_exist():
    people = sample_population(4, seed=0)
    pairs = make_pairs(people, ["Why is the sky blue?"], conversations_per_user=3, seed=0)
    for p in pairs:
        person = next(x for x in people if x.user_id == p.user_id)
        pole = person.preferred_pole("length")
        assert features(p.chosen[0]["content"])["length"] > features(p.rejected[0]["content"])["length"] \
            if pole == "detailed" else features(p.chosen[0]["content"])["length"] < 0
        assert p.score_chosen > p.score_rejected and p.extra["group"] == person.group
    assert "bullet" in style_instruction("format", "lists")


def test_pairs_can_use_written_candidates_and_keep_the_rule():
    people = sample_population(4, seed=0)
    written = {"concise": "Start slowly.", "detailed": "Start slowly, " + "and build up week by week " * 12}
    pairs = make_pairs(people, ["How do I start running?"], conversations_per_user=2, seed=0,
                       writer=lambda prompt, style, rng: written[style["length"]])
    assert len(pairs) == 8
    for p in pairs:
        pole = next(x for x in people if x.user_id == p.user_id).preferred_pole("length")
        assert p.chosen[0]["content"] == written[pole] and p.rejected[0]["content"] != written[pole]


def test_rated_pairs_take_each_users_best_and_worst_of_the_model_written_replies():
    people = sample_population(10, seed=0)
    replies = ["Start slowly " + "and build up week by week " * n for n in (2, 6, 15, 40)]  # 14 to 242 words
    pairs = make_rated_pairs(people, {"How do I start running?": replies, "Why run?": replies[:2]},
                             conversations_per_user=3, seed=0, system="Be helpful.")
    assert len(pairs) == 30 and {p.prompt[0]["content"] for p in pairs} == {"Be helpful."}
    for p in pairs:
        person = next(x for x in people if x.user_id == p.user_id)
        offered = replies if p.prompt[1]["content"] == "How do I start running?" else replies[:2]
        ranked = sorted(offered, key=len, reverse=person.preferred_pole("length") == "detailed")
        assert (p.chosen[0]["content"], p.rejected[0]["content"]) == (ranked[0], ranked[-1])
        assert p.score_chosen > p.score_rejected and p.extra["group"] == person.group
    with pytest.raises(ValueError, match="at least two"):
        make_rated_pairs(people, {"Why run?": ["Yes."]}, conversations_per_user=1)


SIDES = ("register", "tone")  # what a format+length population does not contest


def test_each_person_weighs_the_other_dimensions_by_their_own_side_tastes():
    people = sample_population(20, dimension="format+length", side_weight=0.5, seed=0)
    for p in people:
        assert abs(p.prefs["format"]) == abs(p.prefs["length"]) == 1.0  # the contested ones weigh 1
        assert all(0.25 <= abs(p.prefs[d]) <= 0.5 for d in SIDES), p  # half to all of the side weight
    assert len({p.prefs["tone"] for p in people}) == 20  # each person's own
    assert {p.prefs["tone"] > 0 for p in people} == {True, False}  # either way
    assert sample_population(20, dimension="two+sides", seed=0) == people  # the named population is this one
    for p in sample_population(20, dimension="format+length", side_weight=0.0, seed=0):
        assert all(p.prefs.get(d, 0.0) == 0.0 for d in SIDES)
    # side tastes draw after the groups are dealt: the same people are in the same groups either way
    assert [p.group for p in sample_population(20, dimension="format+length", seed=0)] == [p.group for p in people]


def test_a_side_weight_outside_zero_to_one_or_an_unknown_population_is_refused():
    with pytest.raises(ValueError, match="from 0 to 1"):
        sample_population(4, side_weight=1.5)
    with pytest.raises(ValueError, match="name a population"):
        sample_population(4, dimension="two+nothing")


def test_two_people_of_one_group_rank_a_pair_differently_by_their_side_tastes():
    people = sample_population(20, dimension="two+sides", seed=0)
    group = [p for p in people if p.group == "format:lists+length:detailed"]
    likes_warmth = next(p for p in group if p.prefs["tone"] > 0)
    dislikes_it = next(p for p in group if p.prefs["tone"] < 0)
    style = {"format": "lists", "length": "detailed", "register": "plain"}
    # the same body (the same seed), with and without the warm opening and closing lines
    warm = generate_reply("How do I start running?", {**style, "tone": "warm"}, random.Random(4))
    neutral = generate_reply("How do I start running?", {**style, "tone": "matter-of-fact"}, random.Random(4))
    assert judge_prefers(likes_warmth, warm, neutral) and judge_prefers(dislikes_it, neutral, warm)
    # without side tastes the same two people rank the pair alike: it is their side tastes that part them
    plain = {p.user_id: p for p in sample_population(20, dimension="format+length", seed=0)}
    assert judge_outcome(plain[likes_warmth.user_id], warm, neutral) \
        == judge_outcome(plain[dislikes_it.user_id], warm, neutral)


def test_the_groups_contested_preference_still_outweighs_side_tastes():
    """In pairs of template replies that differ on one contested dimension (the other contested one shared, the
    side dimensions drawn at random for each reply), a person prefers the reply at their group's pole."""
    people = sample_population(20, dimension="two+sides", seed=0)
    rng = random.Random(0)
    poles = lambda names: {d: rng.choice(DIMENSIONS[d].poles) for d in names}  # noqa: E731
    agreed, asked = Counter(), Counter()
    for person in people:
        for contested, shared in (("format", "length"), ("length", "format")):
            mine = person.preferred_pole(contested)
            theirs = next(pole for pole in DIMENSIONS[contested].poles if pole != mine)
            wins = 0
            for _ in range(40):
                both = poles([shared])
                ours = generate_reply("How do I start running?", {**poles(SIDES), **both, contested: mine}, rng)
                other = generate_reply("How do I start running?", {**poles(SIDES), **both, contested: theirs}, rng)
                wins += judge_prefers(person, ours, other)
            assert wins / 40 > 0.6, (person, contested)  # every member, by a clear margin
            agreed[person.group, contested] += wins
            asked[person.group, contested] += 40
    assert len(asked) == 4
    assert all(agreed[key] / asked[key] >= 0.8 for key in asked), {k: agreed[k] / asked[k] for k in asked}
    assert agreed[people[0].group, "length"] < asked[people[0].group, "length"]  # yet side tastes do decide some
