import csv
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from users.collection.pairs import preference_pairs
from users.models import Conversation, Reply, SyntheticPersona
from users.prism import wording as prism_wording
from users.synthetic import rule as synthetic
from users.synthetic.population import personas_from_db, population_synthesize

PRISM_WORDING = Path(__file__).resolve().parents[1] / "data" / "prism"  # two of PRISM's own files (CC-BY-4.0)


def pairs_without_ids():
    return [{k: v for k, v in p.items() if k != "conversation_id"} for p in preference_pairs()]


def test_the_population_is_seeded_and_repeatable(db):
    population_synthesize(population="syn", n_people=4, conversations_per_person=2, seed=5)
    first = pairs_without_ids()
    population_synthesize(population="syn", n_people=4, conversations_per_person=2, seed=5, replace=True)
    assert pairs_without_ids() == first and first
    population_synthesize(population="syn", n_people=4, conversations_per_person=2, seed=6, replace=True)
    assert pairs_without_ids() != first


def test_an_existing_population_is_not_overwritten_by_accident(db):
    population_synthesize(population="syn", n_people=2, conversations_per_person=1)
    with pytest.raises(ValueError, match="exists already"):
        population_synthesize(population="syn", n_people=2, conversations_per_person=1)


def test_the_hidden_profiles_are_stored_with_opposing_groups(db):
    report = population_synthesize(population="syn", n_people=10, conversations_per_person=1, turns_per_conversation=3)
    assert (report.people, report.conversations, report.replies) == (10, 10, 10 * (4 + 2 + 2))
    groups = sorted(SyntheticPersona.objects.values_list("group", flat=True))
    assert groups.count("length:detailed") == 7 and groups.count("length:concise") == 3
    assert all(c.ended_at for c in Conversation.objects.all())
    assert len(personas_from_db("syn")) == 10


def test_the_ratings_follow_each_persons_hidden_rule(db):
    population_synthesize(population="syn", n_people=10, conversations_per_person=3, noise=1.0, seed=1)
    personas = {p.user_id: p for p in personas_from_db("syn")}
    opening = [p for p in preference_pairs() if p["turn"] == 0]
    agree = sum(synthetic.judge_prefers(personas[p["user_id"]], p["chosen"][0]["content"], p["rejected"][0]["content"])
                for p in opening)
    assert agree / len(opening) > 0.9


def test_the_opening_prompts_are_prisms(db):
    population_synthesize(population="syn", n_people=3, conversations_per_person=2)
    shipped = Path("users/prism/data/opening_prompts.jsonl")
    prompts = {json.loads(line)["prompt"] for line in shipped.read_text().splitlines()}
    assert set(Conversation.objects.values_list("opening_prompt", flat=True)) <= prompts


def test_the_command_prints_what_it_made(db, capsys):
    call_command("synthesize_population", "--people", "2", "--conversations", "1", "--population", "cmd")
    assert "2 people, 2 conversations, 12 rated replies" in capsys.readouterr().out
    assert Reply.objects.filter(source__startswith="style-").count() == 12


def test_the_command_makes_the_population_with_side_tastes_and_its_ratings_include_them(db, capsys):
    call_command("synthesize_population", "--people", "20", "--conversations", "1", "--turns", "1",
                 "--dimension", "two+sides", "--noise", "0", "--population", "sides")
    assert "20 people, 20 conversations, 80 rated replies" in capsys.readouterr().out
    groups = list(SyntheticPersona.objects.values_list("group", flat=True))
    assert groups.count("format:lists+length:detailed") == 14 and groups.count("format:prose+length:concise") == 6
    personas = {p.user_id: p for p in personas_from_db("sides")}  # the hidden rule the evaluation judges by
    assert all(0.25 <= abs(p.prefs[d]) <= 0.5 for p in personas.values() for d in ("register", "tone"))
    for r in Reply.objects.select_related("turn__conversation__user"):  # every rating is that rule, side tastes too
        assert r.score == synthetic.score(personas["web-" + r.turn.conversation.user.username], r.content)
    with pytest.raises(CommandError, match="from 0 to 1"):
        call_command("synthesize_population", "--people", "2", "--side-weight", "2", "--population", "heavy")


def test_the_wording_matches_prisms_own_files():
    rows = {row["header"]: row for row in csv.DictReader(open(PRISM_WORDING / "header_prefs_mapping.csv"))}
    for dim, stated, performance, choice in prism_wording.DIMENSIONS:
        assert (rows[dim]["survey_text"], rows[dim]["conversations_performance_factors"],
                rows[dim]["conversations_choice_factors"]) == (stated, performance, choice)
    questions = json.load(open(PRISM_WORDING / "survey_question_mapping.json"))
    for key in ("lm_familiarity", "self_description", "system_string", "age", "employment_status", "education",
                "english_proficiency"):
        assert questions[key]["full_question"] == prism_wording.QUESTIONS[key]
    assert questions["stated_prefs:values"]["full_question"].startswith(prism_wording.STATED_PREFS_QUESTION)


def test_model_mode_candidates_are_written_by_the_serving_model_and_rated_by_the_rule(db, settings, tiny_model_path):
    settings.BASE_MODEL = str(tiny_model_path)
    call_command("synthesize_population", "--people", "2", "--conversations", "1", "--turns", "1", "--mode", "model",
                 "--max-new-tokens", "6", "--population", "lm", "--noise", "0")
    replies = list(Reply.objects.select_related("turn__conversation__user__synthetic"))
    assert len(replies) == 2 * 4 and {r.model_name for r in replies} == {tiny_model_path.name}  # not "template"
    assert all(r.source.startswith("style-") for r in replies)  # the instruction it was steered with
    assert all(r.content.strip() for r in replies)
    personas = {p.user_id: p for p in personas_from_db("lm")}
    for r in replies:  # each rating is the person's hidden rule applied to the text the model wrote
        persona = personas["web-" + r.turn.conversation.user.username]
        assert r.score == synthetic.score(persona, r.content)
