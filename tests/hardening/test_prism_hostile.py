"""Hostile PRISM files are refused with the file, line and field at fault, never with a traceback, and
nothing of a refused file is kept: deep nesting, lone surrogates (escaped or as raw bytes), NaN,
numbers too large for a float, integers too large for the database's columns."""

import copy
import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.collection.test_prism_io import CONVERSATION, SURVEY
from users.models import Conversation, Profile
from users.prism.importer import prism_import
from users.prism.reader import read_records
from users.prism.schema import PrismImportError

HOSTILE_FRAGMENTS = {
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "escaped high surrogate": b'"a \\ud800 b"',
    "escaped low surrogate": b'"\\udc80"',
    "raw surrogate bytes": b'"x\xed\xa0\x80y"',
    "NaN": b"NaN",
    "Infinity": b"-Infinity",
    "1e400": b"1e400",
}


def survey_line_with(fragment: bytes, field: str = "self_description") -> bytes:
    record = json.dumps({**SURVEY, field: "@@"}).encode()
    return record.replace(b'"@@"', fragment) + b"\n"


@pytest.mark.django_db
@pytest.mark.parametrize("name", HOSTILE_FRAGMENTS)
def test_a_hostile_value_is_refused_with_its_line_and_nothing_is_kept(name):
    good = json.dumps({**SURVEY, "user_id": "first"}).encode() + b"\n"
    bad = survey_line_with(HOSTILE_FRAGMENTS[name])
    with pytest.raises(PrismImportError) as caught:
        prism_import(files={"survey": io.BytesIO(good + bad)})
    assert caught.value.file == "survey.jsonl" and caught.value.line == 2
    if "surrogate" in name:
        assert caught.value.field == "self_description"
    assert Profile.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("field, value", [("turn", 10**20), ("turn", 2**31), ("within_turn_id", 2**40)])
def test_integers_beyond_the_database_columns_are_refused_on_every_database(field, value):
    prism_import(files={"survey": io.BytesIO(json.dumps(SURVEY).encode() + b"\n")})
    conversation = copy.deepcopy(CONVERSATION)
    conversation["conversation_history"][1][field] = value
    with pytest.raises(PrismImportError) as caught:
        prism_import(files={"conversations": io.BytesIO(json.dumps(conversation).encode() + b"\n")})
    assert caught.value.field == f"conversation_history[1].{field}"
    assert "from 0 to 2,147,483,647" in str(caught.value)
    assert Conversation.objects.count() == 0


@pytest.mark.django_db
def test_the_upload_page_answers_a_hostile_file_with_the_line_not_a_server_error(client, staff):
    client.force_login(staff)
    upload = io.BytesIO(survey_line_with(HOSTILE_FRAGMENTS["raw surrogate bytes"]))
    upload.name = "survey.jsonl"
    response = client.post(reverse("dataset_import"), {"survey": upload})
    assert response.status_code == 422
    assert "survey.jsonl, line 1, field self_description" in response.content.decode()
    assert Profile.objects.count() == 0


@pytest.mark.django_db
def test_the_import_command_names_file_line_and_field(tmp_path):
    path = tmp_path / "survey.jsonl"
    path.write_bytes(survey_line_with(HOSTILE_FRAGMENTS["deep nesting"]))
    with pytest.raises(CommandError, match=r"survey.jsonl, line 1: the JSON is nested too deeply"):
        call_command("import_prism", "--survey", str(path))


# Any line at all: either records that a database can store, or a PrismImportError. Nothing else escapes.
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.floats(allow_nan=False,
                                                                                        allow_infinity=False))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(), inner, max_size=4)),
                           max_leaves=20)


def storable(value) -> bool:
    if isinstance(value, str):
        return value.encode("utf-8", "strict") is not None
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(storable(v) for v in value)
    return True


def check(line: bytes) -> None:
    try:
        records = list(read_records(io.BytesIO(line), name="any.jsonl"))
    except PrismImportError as exc:
        assert exc.file == "any.jsonl" and str(exc)  # printable, with the file named
        return
    except UnicodeEncodeError:  # only when a test's own text cannot be printed: never from the reader
        raise
    assert all(storable(r) for _, r in records)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5),
       st.sampled_from(sorted(HOSTILE_FRAGMENTS)), st.booleans())
def test_any_record_with_a_hostile_value_anywhere_is_stored_or_refused(record, hostile, inject):
    line = json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if inject:
        line = line[:-1] + (b", " if record else b"") + b'"h": ' + HOSTILE_FRAGMENTS[hostile] + b"}"
    check(line + b"\n")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_at_all_are_stored_or_refused(raw):
    check(raw.replace(b"\n", b" ") + b"\n")
