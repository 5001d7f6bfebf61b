import random

import pytest

from users.synthetic.pairs import make_pairs, make_rated_pairs
from users.synthetic.personas import sample_population
from users.synthetic.replies import generate_reply
from users.synthetic.rule import DIMENSIONS, LENGTH_WORDS_V1, features, judge_prefers, score, style_instruction


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
