import io
import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from users.models import Conversation, Profile, Reply, Turn
from users.prism.importer import prism_import
from users.prism.schema import FILES, MAX_LINE_BYTES, PrismImportError
from users.prism.writer import prism_export_lines
from users.synthetic.prism_files import prism_files_make

SURVEY = {
    "user_id": "user7", "survey_only": False, "num_completed_conversations": "2",  # a string: kept as written
    "consent": "Yes", "consent_age": "Yes", "lm_familiarity": "Very familiar", "lm_indirect_use": "Yes",
    "lm_direct_use": "Yes", "lm_frequency_use": "Every day", "self_description": "Kindness matters — ünïcödé.",
    "system_string": "", "age": "25-34 years old", "gender": "Female", "employment_status": None,
    "education": "Vocational", "marital_status": "Married", "english_proficiency": "Fluent", "study_id": "s1",
    "study_locale": "uk",
    "religion": {"self_described": "none", "categorised": "No Affiliation", "simplified": "No religion"},
    "ethnicity": {"self_described": "white", "categorised": "White", "simplified": "White"},
    "location": {"birth_country": "Mexico", "reside_country": "United Kingdom", "same_birth_reside_country": False},
    "lm_usecases": {"research": True, "games": False}, "stated_prefs": {"values": 80, "other": None},
    "order_lm_usecases": {"research": 1}, "order_stated_prefs": {"values": 3},
    "generated_datetime": "2023-11-22 14:00:00", "timing_duration_s": 612.5, "a_future_field": [1, {"x": 2}],
}
CONVERSATION = {
    "conversation_id": "c7", "user_id": "user7", "generated_datetime": "2023-11-23 09:00:00",
    "conversation_type": "values guided", "opening_prompt": "Is it fair?", "conversation_turns": 2,
    "conversation_history": [
        {"turn": 0, "role": "user", "content": "Is it fair?", "model_provider": None, "model_name": None,
         "score": None, "if_chosen": None, "within_turn_id": None},
        {"turn": 0, "role": "model", "content": "Yes.", "model_provider": "openai", "model_name": "gpt-4",
         "score": 90, "if_chosen": True, "within_turn_id": 0},
        {"turn": 0, "role": "model", "content": "No.", "model_provider": "meta", "model_name": "llama",
         "score": 90, "if_chosen": False, "within_turn_id": 1},  # a tie at the top
        {"turn": 0, "role": "model", "content": "Maybe.", "model_provider": "cohere", "model_name": None,
         "score": 12, "if_chosen": False, "within_turn_id": 2},
        {"turn": 1, "role": "user", "content": "Why?", "model_provider": None, "model_name": None,
         "score": None, "if_chosen": None, "within_turn_id": None},
        {"turn": 1, "role": "model", "content": "Because.", "model_provider": "openai", "model_name": "gpt-4",
         "score": None, "if_chosen": None, "within_turn_id": 0},  # null score, null choice
        {"turn": 1, "role": "model", "content": "Hmm.", "model_provider": "openai", "model_name": "gpt-4",
         "score": None, "if_chosen": None, "within_turn_id": 1, "note": "kept"},
    ],
    "performance_attributes": {"values": 70}, "choice_attributes": None, "open_feedback": None,
    "included_in_balanced_subset": True,
}
UTTERANCE = {
    "utterance_id": "ut-1", "interaction_id": "int-1", "conversation_id": "c7", "user_id": "user7", "turn": 0,
    "within_turn_id": 1, "user_prompt": "Is it fair?", "model_response": "No.", "model_name": "llama",
    "model_provider": "meta", "score": 90, "if_chosen": False, "conversation_type": "values guided",
    "included_in_balanced_subset": True,
}


def jsonl(*records) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode())


def import_records(survey=(SURVEY,), conversations=(CONVERSATION,), utterances=(UTTERANCE,)):
    files = {}
    for name, records in (("survey", survey), ("conversations", conversations), ("utterances", utterances)):
        if records is not None:
            files[name] = jsonl(*records)
    return prism_import(files=files)


def export_all() -> dict[str, str]:
    return {name: "".join(prism_export_lines(file=name)) for name in FILES}


def wipe():
    """Forget every conversation and profile (the users stay, as a re-import would find them)."""
    Conversation.objects.all().delete()
    Profile.objects.all().delete()


def test_an_import_keeps_every_field_of_every_file(db):
    import_records()
    exported = {name: [json.loads(line) for line in text.splitlines()] for name, text in export_all().items()}
    assert exported["survey"][0] == {**SURVEY, "included_in_US_REP": None, "included_in_UK_REP": None,
                                     "included_in_balanced_subset": None, "timing_duration_mins": None}
    assert exported["conversations"][0] == {**CONVERSATION, "timing_duration_s": None, "timing_duration_mins": None}
    assert UTTERANCE in exported["utterances"]


def test_export_import_export_gives_the_same_bytes(db):
    import_records()
    first = export_all()
    wipe()
    prism_import(files={k: io.BytesIO(v.encode()) for k, v in first.items()})
    assert export_all() == first


def test_web_collected_data_round_trips_byte_for_byte_into_another_site(rated_conversation):
    first = export_all()
    assert all(first.values()) and '"user_id": "web-' in first["survey"]
    wipe()
    rated_conversation.user.delete()  # another site: it has no account of that name
    prism_import(files={k: io.BytesIO(v.encode()) for k, v in first.items()})
    assert export_all() == first


def test_reimporting_web_data_into_the_site_that_made_it_is_refused(rated_conversation):
    first = export_all()
    wipe()
    with pytest.raises(PrismImportError) as caught:
        prism_import(files={k: io.BytesIO(v.encode()) for k, v in first.items()})
    assert (caught.value.line, caught.value.field) == (1, "user_id")
    assert "merge two people" in str(caught.value)
    assert not Profile.objects.exists()


def test_a_web_account_and_a_prism_participant_with_the_same_name_stay_two_people(db):
    from tests.factories import person

    person("user7")  # signed up on this site before PRISM's user7 was imported
    import_records()
    exported = [json.loads(line)["user_id"] for line in export_all()["survey"].splitlines()]
    assert sorted(exported) == ["user7", "web-user7"]


def test_an_account_holding_an_imported_persons_name_stops_the_import(db):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user(username="prism-user7", password="pw-x-123456")
    error = refused("user_id", 1)
    assert "prism-user7" in str(error) and not Profile.objects.filter(prism_user_id="user7").exists()


def test_generated_full_format_files_round_trip(db, tmp_path):
    paths = prism_files_make(folder=tmp_path, people=12, conversations=20, replies=130, seed=3)
    prism_import(files={k: open(p, "rb") for k, p in paths.items()})
    assert (Conversation.objects.count(), Reply.objects.count()) == (20, 130)
    first = export_all()
    canonical = lambda lines: sorted(json.dumps(json.loads(line), sort_keys=True) for line in lines)  # noqa: E731
    for name, path in paths.items():  # every record comes back with the same content
        assert canonical(path.read_text().splitlines()) == canonical(first[name].splitlines()), name
    wipe()
    prism_import(files={k: io.BytesIO(v.encode()) for k, v in first.items()})
    assert export_all() == first


def test_importing_twice_creates_no_duplicates(db):
    import_records()
    first = export_all()
    reports = import_records()
    assert [r.replaced for r in reports[:2]] == [1, 1]
    assert (Profile.objects.count(), Conversation.objects.count(), Turn.objects.count(), Reply.objects.count()) == (
        1, 1, 2, 5)
    assert export_all() == first


def test_reimporting_conversations_alone_keeps_the_utterance_ids(db):
    import_records()
    import_records(survey=None, utterances=None)
    assert Reply.objects.get(prism_utterance_id="ut-1").content == "No."


def refused(match_field, line, **files):
    with pytest.raises(PrismImportError) as caught:
        import_records(**files)
    error = caught.value
    assert (error.line, error.field) == (line, match_field), str(error)
    return error


def test_invalid_json_is_refused_naming_file_and_line(db):
    bad = io.BytesIO(json.dumps(SURVEY).encode() + b"\n{not json\n")
    with pytest.raises(PrismImportError) as caught:
        prism_import(files={"survey": bad})
    assert "survey.jsonl, line 2" in str(caught.value) and "invalid JSON" in str(caught.value)
    assert not Profile.objects.exists()


def test_a_missing_user_id_is_refused_and_nothing_from_that_file_is_kept(db):
    error = refused("user_id", 2, survey=(SURVEY, {k: v for k, v in SURVEY.items() if k != "user_id"}))
    assert str(error).startswith("survey.jsonl, line 2, field user_id:")
    assert not Profile.objects.exists()


@pytest.mark.parametrize("score", [0, 101, -5, 50.5, "80", True])
def test_a_score_outside_1_to_100_is_refused(db, score):
    history = [dict(e) for e in CONVERSATION["conversation_history"]]
    history[3]["score"] = score
    error = refused("conversation_history[3].score", 1, conversations=({**CONVERSATION, "conversation_history": history},),
                    utterances=None)
    assert "conversations.jsonl" in str(error)
    assert Profile.objects.count() == 1  # the survey file before it was fine and stays
    assert not Conversation.objects.exists()


def test_an_utterance_score_outside_1_to_100_is_refused(db):
    refused("score", 1, utterances=({**UTTERANCE, "score": 1000},))
    assert not Reply.objects.exclude(prism_utterance_id=None).exists()


def test_a_conversation_of_an_unknown_person_is_refused(db):
    refused("user_id", 2, conversations=(CONVERSATION, {**CONVERSATION, "conversation_id": "c8", "user_id": "ghost"}),
            utterances=None)
    assert not Conversation.objects.exists()


def test_a_turn_without_a_user_message_is_refused(db):
    history = [e for e in CONVERSATION["conversation_history"] if not (e["turn"] == 1 and e["role"] == "user")]
    error = refused("conversation_history", 1, conversations=({**CONVERSATION, "conversation_history": history},),
                    utterances=None)
    assert "turn 1 has no user message" in str(error)


def test_an_utterance_of_an_unknown_conversation_is_refused(db):
    refused("conversation_id", 1, utterances=({**UTTERANCE, "conversation_id": "nope"},))


def test_an_empty_file_is_refused(db):
    with pytest.raises(PrismImportError, match=r"survey.jsonl: the file is empty \(0 bytes\)"):
        prism_import(files={"survey": io.BytesIO(b"")})


class Endless(io.RawIOBase):
    """A stream of ``size`` bytes with no newline, made up as it is read; counts what was read."""

    def __init__(self, size: int):
        self.left, self.read_bytes = size, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        self.read_bytes += n
        return n


def test_a_two_gigabyte_line_is_refused_without_reading_it(db):
    raw = Endless(2 * 1024**3)
    with pytest.raises(PrismImportError) as caught:
        prism_import(files={"survey": io.BufferedReader(raw, 1 << 16)}, max_line_bytes=1 << 20)
    assert caught.value.line == 1 and "longer than 1,048,576 bytes" in caught.value.message
    assert raw.read_bytes < 2 * (1 << 20)


def test_the_default_line_limit_also_stops_a_two_gigabyte_line_early(db):
    raw = Endless(2 * 1024**3)
    with pytest.raises(PrismImportError, match="line 1: the line is longer"):
        prism_import(files={"survey": io.BufferedReader(raw, 1 << 16)})
    assert raw.read_bytes <= MAX_LINE_BYTES + (1 << 17)


text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | text,
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(text, kids, max_size=3),
                           max_leaves=8)


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.dictionaries(st.sampled_from(["consent", "age", "location", "stated_prefs", "zz_new", "survey_only"]),
                             json_values, max_size=4),
       description=text)
def test_any_survey_values_round_trip(db, extra, description):
    wipe()
    import_records(survey=({**SURVEY, **extra, "self_description": description},), conversations=None,
                   utterances=None)
    first = export_all()["survey"]
    wipe()
    prism_import(files={"survey": io.BytesIO(first.encode())})
    assert export_all()["survey"] == first
    record = json.loads(first)
    for key, value in extra.items():
        assert record[key] == value


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(score=st.integers().filter(lambda s: not 1 <= s <= 100))
def test_any_score_outside_the_scale_is_refused(db, score):
    wipe()
    history = [dict(e) for e in CONVERSATION["conversation_history"]]
    history[1]["score"] = score
    with pytest.raises(PrismImportError, match="outside 1–100"):
        import_records(conversations=({**CONVERSATION, "conversation_history": history},), utterances=None)
    assert not Conversation.objects.exists()


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b.strip()))
def test_a_line_that_is_not_a_json_object_is_refused_naming_it(db, junk):
    try:
        value = json.loads(junk)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return
    with pytest.raises(PrismImportError) as caught:
        prism_import(files={"survey": io.BytesIO(json.dumps(SURVEY).encode() + b"\n" + junk + b"\n")})
    assert caught.value.line == 2
