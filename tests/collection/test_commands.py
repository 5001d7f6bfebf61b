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
