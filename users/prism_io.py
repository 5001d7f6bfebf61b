"""PRISM's three files in and out: survey.jsonl, conversations.jsonl, utterances.jsonl.

Lossless by construction: every PRISM key we model goes to its column when the
value fits the column, otherwise — and for every key we do not model or only
derive — it is kept verbatim in the row's ``extra`` JSON. Export writes PRISM's
keys in a fixed order, taking the kept value over the column or the derived
one, then any other kept keys. So export → import → export gives the same bytes.

Import streams line by line through a bounded reader (a 2 GB line is refused
after reading the limit, never held), is atomic per file (one transaction; the
first problem names file, line and field and rolls the file back) and
idempotent (people, conversations and utterances are matched by their PRISM
ids and replaced, never duplicated). Rows are written with bulk_create in
batches.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import IO, Callable, Iterable, Iterator

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Prefetch, Q
from django.utils import timezone

from users.models import Conversation, Profile, Reply, Turn

MAX_LINE_BYTES = 16 * 1024 * 1024
BATCH = 500
FILES = ("survey", "conversations", "utterances")

_TEXT, _JSON = "text", "json"
SURVEY_COLUMNS = {
    **{k: _TEXT for k in ("consent", "consent_age", "lm_familiarity", "lm_indirect_use", "lm_direct_use",
                          "lm_frequency_use", "self_description", "system_string", "age", "gender",
                          "employment_status", "education", "marital_status", "english_proficiency", "study_id",
                          "study_locale")},
    **{k: _JSON for k in ("religion", "ethnicity", "location", "lm_usecases", "stated_prefs", "order_lm_usecases",
                          "order_stated_prefs")},
}
SURVEY_KEYS = ["user_id", "survey_only", "num_completed_conversations", *SURVEY_COLUMNS,
               "generated_datetime", "timing_duration_s", "timing_duration_mins", "included_in_US_REP",
               "included_in_UK_REP", "included_in_balanced_subset"]
CONVERSATION_KEYS = ["conversation_id", "user_id", "generated_datetime", "timing_duration_s",
                     "timing_duration_mins", "conversation_type", "opening_prompt", "conversation_turns",
                     "conversation_history", "performance_attributes", "choice_attributes", "open_feedback",
                     "included_in_balanced_subset"]
HISTORY_KEYS = ["turn", "role", "content", "model_provider", "model_name", "score", "if_chosen", "within_turn_id"]
SURVEY_DERIVED = ["survey_only", "num_completed_conversations", "generated_datetime", "timing_duration_s",
                  "timing_duration_mins", "included_in_US_REP", "included_in_UK_REP", "included_in_balanced_subset"]
CONVERSATION_DERIVED = ["generated_datetime", "timing_duration_s", "timing_duration_mins", "conversation_turns",
                        "included_in_balanced_subset"]
UTTERANCE_KEYS = ["utterance_id", "interaction_id", "conversation_id", "user_id", "turn", "within_turn_id",
                  "user_prompt", "model_response", "model_name", "model_provider", "score", "if_chosen",
                  "conversation_type", "included_in_balanced_subset"]


class PrismImportError(Exception):
    """A refused file: names the file, the line (1-based; 0 for the whole file) and the field."""

    def __init__(self, file: str, line: int, field: str | None, message: str):
        self.file, self.line, self.field, self.message = file, line, field, message
        where = f"{file}, line {line}" if line else file
        if field:
            where += f", field {field}"
        super().__init__(f"{where}: {message}")


@dataclass
class ImportReport:
    file: str
    records: int = 0
    created: int = 0
    replaced: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (f"{self.file}: {self.records:,} records ({self.created:,} new, {self.replaced:,} replaced) "
                f"in {self.seconds:.1f} s")


# --- reading ------------------------------------------------------------------

def read_records(stream: IO[bytes], *, name: str, max_line_bytes: int = MAX_LINE_BYTES
                 ) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) from a binary JSONL stream, holding at most one line.

    ``readline(limit)`` never reads past the limit, so an over-long line is
    refused after ``max_line_bytes + 1`` bytes whatever its real length.
    """
    number, seen_bytes, seen_records = 0, False, False
    while True:
        raw = stream.readline(max_line_bytes + 1)
        if not raw:
            break
        seen_bytes = True
        number += 1
        line = raw.rstrip(b"\r\n")
        if len(line) > max_line_bytes:
            raise PrismImportError(name, number, None, f"the line is longer than {max_line_bytes:,} bytes")
        if not line.strip():
            continue
        if b"\\u0000" in line:
            raise PrismImportError(name, number, None, "text contains a NUL character (\\u0000), "
                                                       "which the database cannot store")
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise PrismImportError(name, number, None, f"invalid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise PrismImportError(name, number, None, f"expected a JSON object, found {type(obj).__name__}")
        seen_records = True
        yield number, obj
    if not seen_bytes:
        raise PrismImportError(name, 0, None, "the file is empty (0 bytes)")
    if not seen_records:
        raise PrismImportError(name, 0, None, "the file holds no records")


def _batches(records: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in records:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _fits(kind: str, value, max_length: int | None = None) -> bool:
    if value is None:
        return True
    if kind == _JSON:
        return isinstance(value, (dict, list))
    return isinstance(value, str) and (max_length is None or len(value) <= max_length)


def _require_id(record: dict, key: str, file: str, line: int) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        problem = "is missing" if value is None else f"must be a non-empty string, found {json.dumps(value)[:40]}"
        raise PrismImportError(file, line, key, problem)
    if len(value) > 120:
        raise PrismImportError(file, line, key, "is longer than 120 characters")
    return value


def _require_int(value, file: str, line: int, field: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PrismImportError(file, line, field, f"must be a whole number ≥ {minimum}, found {json.dumps(value)}")
    return value


def _check_score(value, file: str, line: int, field: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise PrismImportError(file, line, field, f"score {json.dumps(value)} is outside 1–100 (or null)")


def _ordered(keys: list[str], values: dict, extra: dict) -> dict:
    """PRISM's keys in PRISM's order, kept values first, then any other kept keys."""
    out = {k: extra[k] if k in extra else values.get(k) for k in keys}
    for k, v in extra.items():
        if k not in out:
            out[k] = v
    return out


# --- shared exported values ---------------------------------------------------

WEB_PREFIX = "web-"  # this site's own accounts export as web-<username>; imported PRISM ids stay as they were
IMPORTED_PREFIX = "prism-"  # usernames of imported people (signup refuses it)


def exported_id(prism_user_id: str | None, username: str) -> str:
    """The person's id in exports and training data: their PRISM id if imported, else web-<username>.

    Two namespaces, so a web account called "user5" and PRISM's "user5" stay two people.
    """
    return prism_user_id or WEB_PREFIX + username


def web_username(exported: str) -> str | None:
    """The username behind a web-<username> id (the inverse of ``exported_id`` for this site's accounts)."""
    return exported[len(WEB_PREFIX):] if exported.startswith(WEB_PREFIX) else None


def exported_user_id(user, profile: Profile | None) -> str:
    return exported_id(profile.prism_user_id if profile is not None else None, user.username)


def exported_conversation_id(conversation: Conversation) -> str:
    return conversation.prism_id or f"web-c{conversation.pk}"


def _user_entry(turn: Turn) -> dict:
    return _ordered(HISTORY_KEYS, {"turn": turn.index, "role": "user", "content": turn.user_message}, turn.extra)


def _model_entry(turn: Turn, reply: Reply) -> dict:
    values = {"turn": turn.index, "role": "model", "content": reply.content, "model_provider": reply.model_provider,
              "model_name": reply.model_name, "score": reply.score, "if_chosen": reply.chosen,
              "within_turn_id": reply.position}
    return _ordered(HISTORY_KEYS, values, reply.extra)


def _conversation_values(conversation: Conversation, user_id: str, turns: list[Turn]) -> dict:
    duration = None
    if conversation.ended_at is not None:
        duration = round((conversation.ended_at - conversation.created_at).total_seconds(), 1)
    history = []
    for turn in turns:
        history.append(_user_entry(turn))
        history.extend(_model_entry(turn, r) for r in turn.replies.all())
    return {
        "conversation_id": exported_conversation_id(conversation), "user_id": user_id,
        "generated_datetime": conversation.created_at.isoformat(), "timing_duration_s": duration,
        "timing_duration_mins": None if duration is None else round(duration / 60, 2),
        "conversation_type": conversation.kind, "opening_prompt": conversation.opening_prompt,
        "conversation_turns": len(turns), "conversation_history": history,
        "performance_attributes": conversation.performance_attributes,
        "choice_attributes": conversation.choice_attributes, "open_feedback": conversation.open_feedback,
        "included_in_balanced_subset": None,
    }


def _utterance_values(conversation: Conversation, user_id: str, turn: Turn, reply: Reply) -> dict:
    entry = _model_entry(turn, reply)
    conversation_id = exported_conversation_id(conversation)
    return {
        "utterance_id": reply.prism_utterance_id or f"{conversation_id}-u{turn.index}-{reply.position}",
        "interaction_id": reply.prism_interaction_id or f"{conversation_id}-t{turn.index}",
        "conversation_id": conversation_id, "user_id": user_id, "turn": turn.index,
        "within_turn_id": reply.position, "user_prompt": _user_entry(turn)["content"],
        "model_response": entry["content"], "model_name": entry["model_name"],
        "model_provider": entry["model_provider"], "score": entry["score"], "if_chosen": entry["if_chosen"],
        "conversation_type": conversation.kind,
        "included_in_balanced_subset": conversation.extra.get("included_in_balanced_subset"),
    }


# --- export ---------------------------------------------------------------------

def _dump(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def _profiles(users=None):
    qs = Profile.objects.filter(completed_at__isnull=False).select_related("user").order_by("pk")
    return qs if users is None else qs.filter(user__in=users)


def prism_export_lines(*, file: str, users=None) -> Iterator[str]:
    """The lines of one PRISM file; ``users`` (a queryset or list) limits it to those people."""
    if file == "survey":
        qs = _profiles(users).annotate(
            done=Count("user__conversations", filter=Q(user__conversations__ended_at__isnull=False,
                                                       user__conversations__kind__in=Conversation.EXPORTED_KINDS)))
        for profile in qs.iterator(chunk_size=BATCH):
            values = {k: getattr(profile, k) for k in SURVEY_COLUMNS}
            values.update(user_id=exported_user_id(profile.user, profile), survey_only=profile.done == 0,
                          num_completed_conversations=profile.done,
                          generated_datetime=profile.completed_at.isoformat())
            yield _dump(_ordered(SURVEY_KEYS, values, profile.extra))
        return
    if file not in ("conversations", "utterances"):
        raise ValueError(f"unknown PRISM file {file!r}: use one of {FILES}")
    qs = (Conversation.objects.filter(kind__in=Conversation.EXPORTED_KINDS).select_related("user__profile")
          .prefetch_related(Prefetch("turns", queryset=Turn.objects.order_by("index").prefetch_related(
              Prefetch("replies", queryset=Reply.objects.order_by("position")))))
          .order_by("pk"))
    if users is not None:
        qs = qs.filter(user__in=users)
    for conversation in qs.iterator(chunk_size=BATCH):
        user_id = exported_user_id(conversation.user, getattr(conversation.user, "profile", None))
        turns = list(conversation.turns.all())
        if file == "conversations":
            yield _dump(_ordered(CONVERSATION_KEYS, _conversation_values(conversation, user_id, turns),
                                 conversation.extra))
            continue
        for turn in turns:
            for reply in turn.replies.all():
                if reply.score is None and reply.prism_utterance_id is None and not reply.utterance_extra:
                    continue  # not rated: PRISM has one utterance per rated reply
                values = _utterance_values(conversation, user_id, turn, reply)
                yield _dump(_ordered(UTTERANCE_KEYS, values, reply.utterance_extra))


def prism_export(*, file: str, out: IO[str], users=None) -> int:
    count = 0
    for line in prism_export_lines(file=file, users=users):
        out.write(line)
        count += 1
    return count


# --- import -----------------------------------------------------------------------

def prism_import(*, files: dict[str, IO[bytes]], names: dict[str, str] | None = None,
                 max_line_bytes: int = MAX_LINE_BYTES, batch_size: int = BATCH) -> list[ImportReport]:
    """Import any of the three files, in PRISM's order (people before their
    conversations before their utterances), each in its own transaction.
    Stops at the first refused file, raising PrismImportError; files before it stay imported."""
    unknown = set(files) - set(FILES)
    if unknown:
        raise ValueError(f"unknown PRISM files {sorted(unknown)}: use {FILES}")
    reports = []
    for key in FILES:
        if key in files:
            name = (names or {}).get(key, f"{key}.jsonl")
            records = read_records(files[key], name=name, max_line_bytes=max_line_bytes)
            started = time.perf_counter()
            report = ImportReport(name)
            seen: dict = {}  # PRISM id -> first line, across batches: a repeated id is refused
            with transaction.atomic():
                for batch in _batches(records, batch_size):
                    _IMPORTERS[key](batch, name, report, seen)
            report.seconds = time.perf_counter() - started
            reports.append(report)
    return reports


def _username_for(prism_user_id: str) -> str:
    name = IMPORTED_PREFIX + prism_user_id
    return name if len(name) <= 150 else IMPORTED_PREFIX + hashlib.sha1(prism_user_id.encode()).hexdigest()


def _first_time(seen: dict, key, file: str, line: int, field: str, what: str) -> None:
    if key in seen:
        raise PrismImportError(file, line, field, f"{what} appears twice (first on line {seen[key]})")
    seen[key] = line


def _import_survey(batch: list[tuple[int, dict]], file: str, report: ImportReport, seen: dict) -> None:
    User = get_user_model()
    rows: dict[str, tuple[int, dict]] = {}
    for line, record in batch:
        uid = _require_id(record, "user_id", file, line)
        _first_time(seen, uid, file, line, "user_id", repr(uid))
        rows[uid] = (line, record)
    existing = {p.prism_user_id: p for p in Profile.objects.filter(prism_user_id__in=list(rows))}
    web_ids = {name: uid for uid in rows if uid not in existing and (name := web_username(uid))}
    ours = User.objects.filter(username__in=list(web_ids)).values_list("username", flat=True).first()
    if ours is not None:
        uid = web_ids[ours]
        raise PrismImportError(file, rows[uid][0], "user_id",
                               f"{uid!r} is how this site exports its own account {ours!r}: importing it would "
                               "merge two people. Import this file into another site, or rename the id")
    usernames = {_username_for(uid): uid for uid in rows if uid not in existing}
    # An account of that name is reused only if the importer made it (no password) and it lost its profile;
    # anything else is somebody else's account.
    users = {u.username: u for u in User.objects.filter(username__in=list(usernames))
             .annotate(has_profile=Exists(Profile.objects.filter(user=OuterRef("pk"))))}
    taken = next((u for u in users.values() if u.has_profile or u.has_usable_password()), None)
    if taken is not None:
        uid = usernames[taken.username]
        raise PrismImportError(file, rows[uid][0], "user_id",
                               f"the account {taken.username!r} exists but is not PRISM user {uid!r}; rename that "
                               "account before importing")
    for user in User.objects.bulk_create([User(username=name, password=make_password(None))
                                          for name in usernames if name not in users]):
        users[user.username] = user
    now = timezone.now()
    create, update = [], []
    for uid, (line, record) in rows.items():
        profile = existing.get(uid) or Profile(user=users[_username_for(uid)], prism_user_id=uid)
        extra = {}
        for key, value in record.items():
            kind = SURVEY_COLUMNS.get(key)
            if key == "user_id":
                continue
            if kind is not None and _fits(kind, value):
                setattr(profile, key, value)
            else:
                extra[key] = value
        for key, kind in SURVEY_COLUMNS.items():  # a key absent from the record is null
            if key not in record or not _fits(kind, record[key]):
                setattr(profile, key, None)
        for key in SURVEY_DERIVED:  # absent means null, not "work it out"
            extra.setdefault(key, None)
        profile.extra = extra
        profile.completed_at = profile.completed_at or now
        (update if profile.pk else create).append(profile)
    if update:  # replace rather than bulk_update: its CASE expressions are slow for 24 columns
        Profile.objects.filter(pk__in=[p.pk for p in update]).delete()
        for profile in update:
            profile.pk = None
    Profile.objects.bulk_create(create + update)
    report.records += len(rows)
    report.created += len(create)
    report.replaced += len(update)


def _parse_history(history, file: str, line: int) -> list[tuple[dict, list[dict]]]:
    """Group the history by turn: [(user entry, [model entries])], validated."""
    if not isinstance(history, list):
        raise PrismImportError(file, line, "conversation_history", "must be a list of messages")
    turns: dict[int, list] = {}
    for i, entry in enumerate(history):
        where = f"conversation_history[{i}]"
        if not isinstance(entry, dict):
            raise PrismImportError(file, line, where, "must be an object")
        index = _require_int(entry.get("turn"), file, line, f"{where}.turn")
        slot = turns.setdefault(index, [None, []])
        role = entry.get("role")
        if role == "user":
            if slot[0] is not None:
                raise PrismImportError(file, line, f"{where}.role", f"turn {index} has two user messages")
            if not isinstance(entry.get("content"), str):
                raise PrismImportError(file, line, f"{where}.content", f"turn {index} has no user message")
            slot[0] = entry
        elif role == "model":
            _check_score(entry.get("score"), file, line, f"{where}.score")
            position = _require_int(entry.get("within_turn_id"), file, line, f"{where}.within_turn_id")
            if any(e["within_turn_id"] == position for e in slot[1]):
                raise PrismImportError(file, line, f"{where}.within_turn_id",
                                       f"turn {index} has two replies with within_turn_id {position}")
            slot[1].append(entry)
        else:
            raise PrismImportError(file, line, f"{where}.role", f"must be 'user' or 'model', found {json.dumps(role)}")
    for index, (user_entry, _models) in turns.items():
        if user_entry is None:
            raise PrismImportError(file, line, "conversation_history", f"turn {index} has no user message")
    return [turns[i] for i in sorted(turns)]


def _import_conversations(batch: list[tuple[int, dict]], file: str, report: ImportReport, seen: dict) -> None:
    parsed = []
    for line, record in batch:
        cid = _require_id(record, "conversation_id", file, line)
        _first_time(seen, cid, file, line, "conversation_id", repr(cid))
        uid = _require_id(record, "user_id", file, line)
        kind = record.get("conversation_type")
        if kind not in Conversation.EXPORTED_KINDS:
            raise PrismImportError(file, line, "conversation_type",
                                   f"must be one of {', '.join(Conversation.EXPORTED_KINDS)}, found {json.dumps(kind)}")
        parsed.append((line, cid, uid, record, _parse_history(record.get("conversation_history"), file, line)))
    people = dict(Profile.objects.filter(prism_user_id__in={p[2] for p in parsed})
                  .values_list("prism_user_id", "user_id"))
    for line, _cid, uid, _record, _turns in parsed:
        if uid not in people:
            raise PrismImportError(file, line, "user_id", f"no person with user_id {uid!r}: import their survey first")

    # Re-import replaces a conversation; the utterance ids already attached to its replies carry over.
    existing = dict(Conversation.objects.filter(prism_id__in=[p[1] for p in parsed]).values_list("pk", "prism_id"))
    carried = {}
    if existing:
        for prism_id, index, position, *kept in Reply.objects.filter(turn__conversation__in=list(existing)).values_list(
                "turn__conversation__prism_id", "turn__index", "position", "prism_utterance_id",
                "prism_interaction_id", "utterance_extra"):
            carried[(prism_id, index, position)] = kept
        Conversation.objects.filter(pk__in=list(existing)).delete()

    conversations = []
    for line, cid, uid, record, _turns in parsed:
        conv = Conversation(prism_id=cid, user_id=people[uid], kind=record["conversation_type"])
        extra = {}
        for key, value in record.items():
            if key in ("opening_prompt", "open_feedback") and _fits(_TEXT, value):
                setattr(conv, key, value)
            elif key in ("performance_attributes", "choice_attributes") and _fits(_JSON, value):
                setattr(conv, key, value)
            elif key not in ("conversation_id", "user_id", "conversation_history", "conversation_type"):
                extra[key] = value
        for key in CONVERSATION_DERIVED:  # absent means null, not "work it out"
            extra.setdefault(key, None)
        conv.extra = extra
        first = _turns[0][0]["content"] if _turns else ""
        conv.title = (conv.opening_prompt if isinstance(conv.opening_prompt, str) else first)[:80]
        conv.ended_at = timezone.now()
        conversations.append(conv)
    Conversation.objects.bulk_create(conversations)

    turns, reply_specs = [], []
    for conv, (_line, cid, _uid, _record, parsed_turns) in zip(conversations, parsed):
        for user_entry, model_entries in parsed_turns:
            turn = Turn(conversation=conv, index=user_entry["turn"], user_message=user_entry["content"],
                        extra={k: v for k, v in user_entry.items() if k not in ("turn", "role", "content")})
            turns.append(turn)
            reply_specs.append((cid, turn, model_entries))
    Turn.objects.bulk_create(turns)

    replies = []
    for cid, turn, model_entries in reply_specs:
        for entry in model_entries:
            reply = Reply(turn=turn, position=entry["within_turn_id"], source="prism-import",
                          status=Reply.Status.DONE, score=entry.get("score"))
            extra = {}
            for key, value in entry.items():
                if key in ("turn", "role", "within_turn_id", "score"):
                    continue
                if key == "content" and _fits(_TEXT, value) and value is not None:
                    reply.content = value
                elif key == "model_name" and _fits(_TEXT, value, 120) and value is not None:
                    reply.model_name = value
                elif key == "model_provider" and _fits(_TEXT, value, 120):
                    reply.model_provider = value
                elif key == "if_chosen" and isinstance(value, bool):
                    reply.chosen = value
                else:
                    extra[key] = value
            for key in ("content", "model_name", "model_provider", "if_chosen"):
                if key not in entry:
                    extra.setdefault(key, None)
            reply.extra = extra
            kept = carried.get((cid, turn.index, reply.position))
            if kept:
                reply.prism_utterance_id, reply.prism_interaction_id, reply.utterance_extra = kept
            replies.append(reply)
    Reply.objects.bulk_create(replies, batch_size=2000)
    report.records += len(parsed)
    report.replaced += len(existing)
    report.created += len(parsed) - len(existing)


def _import_utterances(batch: list[tuple[int, dict]], file: str, report: ImportReport, seen: dict) -> None:
    wanted = {}
    for line, record in batch:
        cid = _require_id(record, "conversation_id", file, line)
        turn = _require_int(record.get("turn"), file, line, "turn")
        position = _require_int(record.get("within_turn_id"), file, line, "within_turn_id")
        _check_score(record.get("score"), file, line, "score")
        key = (cid, turn, position)
        _first_time(seen, key, file, line, "within_turn_id",
                    f"the utterance for turn {turn}, within_turn_id {position} of {cid!r}")
        wanted[key] = (line, record)
    found = _replies_by_prism_key({k[0] for k in wanted})
    known_conversations = {k[0] for k in found}
    rows = []
    for key, (line, record) in wanted.items():
        hit = found.get(key)
        if hit is None:
            if key[0] not in known_conversations:
                raise PrismImportError(file, line, "conversation_id",
                                       f"no conversation {key[0]!r}: import conversations.jsonl first")
            raise PrismImportError(file, line, "within_turn_id",
                                   f"conversation {key[0]!r} has no reply at turn {key[1]}, within_turn_id {key[2]}")
        conversation, user_id, turn, reply = hit
        derived = _utterance_values(conversation, user_id, turn, reply)
        ids = {"utterance_id": None, "interaction_id": None}
        extra = {}
        for k, value in record.items():
            if k in ids and _fits(_TEXT, value, 120) and value is not None:
                ids[k] = value
            elif k in ids or k not in derived or derived[k] != value or type(derived[k]) is not type(value):
                extra[k] = value
        for k in UTTERANCE_KEYS:  # a key the record lacks is exported as null, not derived
            if k not in record:
                extra[k] = None
        rows.append((ids["utterance_id"], ids["interaction_id"], extra, reply.pk))
    _update_utterance_columns(rows)
    report.records += len(rows)
    report.created += len(rows)


def _replies_by_prism_key(conversation_ids: set[str]) -> dict:
    """(conversation prism id, turn, within_turn_id) -> (conversation, user id, turn, reply), as light
    stand-ins carrying just what the exported values need (far cheaper than model instances)."""
    from types import SimpleNamespace as NS

    found, conversations, turns = {}, {}, {}
    rows = Reply.objects.filter(turn__conversation__prism_id__in=conversation_ids).values_list(
        "pk", "position", "content", "model_name", "model_provider", "score", "chosen", "extra",
        "prism_utterance_id", "prism_interaction_id",
        "turn_id", "turn__index", "turn__user_message", "turn__extra",
        "turn__conversation_id", "turn__conversation__prism_id", "turn__conversation__kind",
        "turn__conversation__extra", "turn__conversation__user__username",
        "turn__conversation__user__profile__prism_user_id")
    for (pk, position, content, model_name, provider, score, chosen, extra, utt, inter, turn_id, index, message,
         turn_extra, conv_pk, prism_id, kind, conv_extra, username, prism_user) in rows:
        conversation = conversations.setdefault(conv_pk, NS(pk=conv_pk, prism_id=prism_id, kind=kind, extra=conv_extra))
        turn = turns.setdefault(turn_id, NS(index=index, user_message=message, extra=turn_extra))
        reply = NS(pk=pk, position=position, content=content, model_name=model_name, model_provider=provider,
                   score=score, chosen=chosen, extra=extra, prism_utterance_id=utt, prism_interaction_id=inter)
        found[(prism_id, index, position)] = (conversation, prism_user or username, turn, reply)
    return found


def _update_utterance_columns(rows: list[tuple]) -> None:
    """One UPDATE per reply through executemany (pipelined by psycopg): bulk_update's CASE
    expressions cost more to build than the whole import of the conversations."""
    field = Reply._meta.get_field("utterance_extra")
    table = connection.ops.quote_name(Reply._meta.db_table)
    params = [(u, i, field.get_db_prep_save(extra, connection), pk) for u, i, extra, pk in rows]
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET prism_utterance_id = %s, prism_interaction_id = %s, utterance_extra = %s "
            f"WHERE id = %s", params)


_IMPORTERS: dict[str, Callable] = {
    "survey": _import_survey,
    "conversations": _import_conversations,
    "utterances": _import_utterances,
}
