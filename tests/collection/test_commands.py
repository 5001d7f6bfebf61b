import json

import pytest
from django.core.management import CommandError, call_command

from users.models import Reply


def test_make_import_and_export_prism_files_from_the_command_line(db, tmp_path, capsys):
    call_command("make_prism_files", str(tmp_path / "in"), "--people", "5", "--conversations", "8", "--replies", "50")
    call_command("import_prism", str(tmp_path / "in"))
    assert "conversations.jsonl: 8 records (8 new, 0 replaced)" in capsys.readouterr().out
    assert Reply.objects.count() == 50 and Reply.objects.exclude(prism_utterance_id=None).count() == 50
    call_command("export_prism", str(tmp_path / "out"))
    assert len((tmp_path / "out" / "utterances.jsonl").read_text().splitlines()) == 50 - Reply.objects.filter(
        score=None, prism_utterance_id=None).count()
    call_command("export_pairs", str(tmp_path / "pairs.jsonl"), "--min-margin", "5")
    pair = json.loads((tmp_path / "pairs.jsonl").read_text().splitlines()[0])
    assert pair["score_chosen"] - pair["score_rejected"] >= 5 and pair["user_id"].startswith("user")


def test_a_refused_file_stops_the_command_with_its_line(db, tmp_path):
    (tmp_path / "survey.jsonl").write_text('{"user_id": "u1"}\n{"user_id": 3}\n')
    with pytest.raises(CommandError, match="line 2, field user_id"):
        call_command("import_prism", "--survey", str(tmp_path / "survey.jsonl"))


def test_the_import_command_needs_a_file(db):
    with pytest.raises(CommandError, match="Name a folder"):
        call_command("import_prism")


def test_export_pairs_takes_the_exported_id_or_the_username_and_counts_per_person(db, tmp_path, capsys):
    call_command("make_prism_files", str(tmp_path / "in"), "--people", "5", "--conversations", "12", "--replies",
                 "80", "--seed", "3")
    call_command("import_prism", str(tmp_path / "in"))
    call_command("export_pairs", str(tmp_path / "all.jsonl"))
    everyone = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    someone = everyone[0]["user_id"]  # an imported person's PRISM id, as the pairs carry it
    expected = sum(p["user_id"] == someone for p in everyone)
    capsys.readouterr()
    call_command("export_pairs", str(tmp_path / "one.jsonl"), "--user", someone, "--stats")
    err = capsys.readouterr().err
    mine = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    assert len(mine) == expected > 0 and {p["user_id"] for p in mine} == {someone}
    assert f"{expected:,} pairs of 1 people" in err and f"  {someone:<30} {expected:>6,}" in err
    assert "pairs per person: min" in err and "score margin (chosen - rejected)" in err
    call_command("export_pairs", str(tmp_path / "by-name.jsonl"), "--user", f"prism-{someone}")
    assert (tmp_path / "by-name.jsonl").read_text() == (tmp_path / "one.jsonl").read_text()


def test_export_pairs_refuses_a_person_it_does_not_know(db, owner):
    with pytest.raises(CommandError, match=r"No person called 'user9007': give a username or the user_id"):
        call_command("export_pairs", "--user", "user9007", "--user", owner.username)


def test_people_are_found_by_web_id_username_or_prism_id_and_never_confused(db, owner):
    from django.contrib.auth import get_user_model

    from users.dataset.selectors import people_named
    from users.models import Profile

    imported = get_user_model().objects.create_user("prism-alice")
    Profile.objects.create(user=imported, prism_user_id="alice")  # PRISM's "alice" is not the web account "alice"
    assert people_named(["web-alice"]) == ([owner], [])
    assert people_named(["alice"]) == ([imported], [])  # the id the pairs carry wins over a username
    assert people_named(["prism-alice", "nobody"]) == ([imported], ["nobody"])


def test_export_pairs_leaves_out_who_withdrew_and_writes_a_dataset_that_load_dataset_reads(db, tmp_path, capsys):
    from datasets import load_dataset

    from tests.factories import person, rated_conversations
    from users.accounts.onboarding import withdraw

    staying, leaving = person("staying"), person("leaving")
    for who in (staying, leaving):
        rated_conversations(who, n=3)
    withdraw(user=leaving)
    call_command("export_pairs", "--dataset", str(tmp_path / "pairs"), "--user", "staying", "--user", "leaving")
    assert "left out (no consent, or withdrew): leaving" in capsys.readouterr().err
    pairs = load_dataset(str(tmp_path / "pairs"), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(pairs) == 3 and set(pairs["user_id"]) == {"web-staying"}
    assert pairs[0]["chosen"] == [{"role": "assistant", "content": "Sleep at the same time every night."}]
    assert "3 pairs from 1 people" in (tmp_path / "pairs" / "README.md").read_text()
    call_command("export_pairs", str(tmp_path / "all.jsonl"))
    assert {json.loads(line)["user_id"] for line in (tmp_path / "all.jsonl").read_text().splitlines()} == {
        "web-staying"}
    with pytest.raises(CommandError, match="exists: choose a new folder"):
        call_command("export_pairs", "--dataset", str(tmp_path / "pairs"))
