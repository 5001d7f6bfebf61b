"""Reading PRISM's three files into the database.

Import streams line by line through a bounded reader (a 2 GB line is refused
after reading the limit, never held), is atomic per file (one transaction; the
first problem names file, line and field and rolls the file back) and
idempotent (people, conversations and utterances are matched by their PRISM
ids and replaced, never duplicated). Rows are written with bulk_create in
batches.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import IO, Callable

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from users.models import Conversation, Profile, Reply, Turn
from users.prism.ids import imported_username, web_username
from users.prism.reader import batches, read_records
from users.prism.schema import (
    BATCH,
    CONVERSATION_DERIVED,
    FILES,
    JSON,
    MAX_LINE_BYTES,
    SURVEY_COLUMNS,
    SURVEY_DERIVED,
    TEXT,
    UTTERANCE_KEYS,
    ImportReport,
    PrismImportError,
    check_score,
    fits,
    require_id,
    require_int,
)
from users.prism.writer import utterance_values


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
                for batch in batches(records, batch_size):
                    _IMPORTERS[key](batch, name, report, seen)
            report.seconds = time.perf_counter() - started
            reports.append(report)
    return reports


def _first_time(seen: dict, key, file: str, line: int, field: str, what: str) -> None:
    if key in seen:
        raise PrismImportError(file, line, field, f"{what} appears twice (first on line {seen[key]})")
    seen[key] = line


def _import_survey(batch: list[tuple[int, dict]], file: str, report: ImportReport, seen: dict) -> None:
    User = get_user_model()
    rows: dict[str, tuple[int, dict]] = {}
    for line, record in batch:
        uid = require_id(record, "user_id", file, line)
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
    usernames = {imported_username(uid): uid for uid in rows if uid not in existing}
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
        profile = existing.get(uid) or Profile(user=users[imported_username(uid)], prism_user_id=uid)
        extra = {}
        for key, value in record.items():
            kind = SURVEY_COLUMNS.get(key)
            if key == "user_id":
                continue
            if kind is not None and fits(kind, value):
                setattr(profile, key, value)
            else:
                extra[key] = value
        for key, kind in SURVEY_COLUMNS.items():  # a key absent from the record is null
            if key not in record or not fits(kind, record[key]):
                setattr(profile, key, None)
        for key in SURVEY_DERIVED:  # absent means null, not "work it out"
            extra.setdefault(key, None)
        profile.extra = extra
        profile.completed_at = prism_datetime(record.get("generated_datetime")) or profile.completed_at or now
        (update if profile.pk else create).append(profile)
    if update:  # replace rather than bulk_update: its CASE expressions are slow for 24 columns
        Profile.objects.filter(pk__in=[p.pk for p in update]).delete()
        for profile in update:
            profile.pk = None
    Profile.objects.bulk_create(create + update)
    report.records += len(rows)
    report.created += len(create)
    report.replaced += len(update)


def prism_datetime(value) -> dt.datetime | None:
    """PRISM's ``generated_datetime`` ("2023-11-22 14:00:00", UTC) as an aware datetime; None when absent or
    not a date (such a value is still kept as written in ``extra``)."""
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_history(history, file: str, line: int) -> list[tuple[dict, list[dict]]]:
    """Group the history by turn: [(user entry, [model entries])], validated."""
    if not isinstance(history, list):
        raise PrismImportError(file, line, "conversation_history", "must be a list of messages")
    turns: dict[int, list] = {}
    for i, entry in enumerate(history):
        where = f"conversation_history[{i}]"
        if not isinstance(entry, dict):
            raise PrismImportError(file, line, where, "must be an object")
        index = require_int(entry.get("turn"), file, line, f"{where}.turn")
        slot = turns.setdefault(index, [None, []])
        role = entry.get("role")
        if role == "user":
            if slot[0] is not None:
                raise PrismImportError(file, line, f"{where}.role", f"turn {index} has two user messages")
            if not isinstance(entry.get("content"), str):
                raise PrismImportError(file, line, f"{where}.content", f"turn {index} has no user message")
            slot[0] = entry
        elif role == "model":
            check_score(entry.get("score"), file, line, f"{where}.score")
            position = require_int(entry.get("within_turn_id"), file, line, f"{where}.within_turn_id")
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


@dataclass(frozen=True)
class _ParsedConversation:
    """One conversations.jsonl record, checked: where it was, its ids, the record and its turns."""

    line: int
    prism_id: str
    user_id: str
    record: dict
    turns: list  # (user entry, [model entries]) per turn


def _import_conversations(batch: list[tuple[int, dict]], file: str, report: ImportReport, seen: dict) -> None:
    parsed = []
    for line, record in batch:
        cid = require_id(record, "conversation_id", file, line)
        _first_time(seen, cid, file, line, "conversation_id", repr(cid))
        uid = require_id(record, "user_id", file, line)
        kind = record.get("conversation_type")
        if kind not in Conversation.EXPORTED_KINDS:
            raise PrismImportError(file, line, "conversation_type",
                                   f"must be one of {', '.join(Conversation.EXPORTED_KINDS)}, found {json.dumps(kind)}")
        parsed.append(_ParsedConversation(line, cid, uid, record,
                                          _parse_history(record.get("conversation_history"), file, line)))
    people = dict(Profile.objects.filter(prism_user_id__in={p.user_id for p in parsed})
                  .values_list("prism_user_id", "user_id"))
    for p in parsed:
        if p.user_id not in people:
            raise PrismImportError(file, p.line, "user_id",
                                   f"no person with user_id {p.user_id!r}: import their survey first")

    existing, carried = _replace_existing([p.prism_id for p in parsed])
    conversations = [_conversation(p, people[p.user_id]) for p in parsed]
    Conversation.objects.bulk_create(conversations)
    # Dated by PRISM's own time when it has one (browsing by date means when people talked, not when we imported);
    # bulk_create stamps creation with now, so the dates are written after it.
    now = timezone.now()
    for conv, p in zip(conversations, parsed):
        when = prism_datetime(p.record.get("generated_datetime"))
        seconds = p.record.get("timing_duration_s")
        conv.created_at = when or conv.created_at
        lasted = dt.timedelta(seconds=seconds) if when and _number(seconds) and 0 <= seconds < 1e7 else None
        conv.ended_at = when + lasted if lasted is not None else (when or now)
    Conversation.objects.bulk_update(conversations, ["created_at", "ended_at"], batch_size=2000)

    turns, reply_specs = [], []
    for conv, p in zip(conversations, parsed):
        for user_entry, model_entries in p.turns:
            turn = Turn(conversation=conv, index=user_entry["turn"], user_message=user_entry["content"],
                        extra={k: v for k, v in user_entry.items() if k not in ("turn", "role", "content")})
            turns.append(turn)
            reply_specs.append((p.prism_id, turn, model_entries))
    Turn.objects.bulk_create(turns)
    replies = [_reply(turn, entry, carried.get((cid, turn.index, entry["within_turn_id"])))
               for cid, turn, model_entries in reply_specs for entry in model_entries]
    Reply.objects.bulk_create(replies, batch_size=2000)
    report.records += len(parsed)
    report.replaced += len(existing)
    report.created += len(parsed) - len(existing)


def _replace_existing(prism_ids: list[str]) -> tuple[dict, dict]:
    """Delete the conversations a re-import replaces; the utterance ids attached to their replies, by
    (conversation, turn, position), carry over to the new ones."""
    existing = dict(Conversation.objects.filter(prism_id__in=prism_ids).values_list("pk", "prism_id"))
    carried = {}
    if existing:
        for prism_id, index, position, *kept in Reply.objects.filter(turn__conversation__in=list(existing)).values_list(
                "turn__conversation__prism_id", "turn__index", "position", "prism_utterance_id",
                "prism_interaction_id", "utterance_extra"):
            carried[(prism_id, index, position)] = kept
        Conversation.objects.filter(pk__in=list(existing)).delete()
    return existing, carried


def _conversation(p: _ParsedConversation, user_pk: int) -> Conversation:
    conv = Conversation(prism_id=p.prism_id, user_id=user_pk, kind=p.record["conversation_type"])
    extra = {}
    for key, value in p.record.items():
        if key in ("opening_prompt", "open_feedback") and fits(TEXT, value):
            setattr(conv, key, value)
        elif key in ("performance_attributes", "choice_attributes") and fits(JSON, value):
            setattr(conv, key, value)
        elif key not in ("conversation_id", "user_id", "conversation_history", "conversation_type"):
            extra[key] = value
    for key in CONVERSATION_DERIVED:  # absent means null, not "work it out"
        extra.setdefault(key, None)
    conv.extra = extra
    first = p.turns[0][0]["content"] if p.turns else ""
    conv.title = (conv.opening_prompt if isinstance(conv.opening_prompt, str) else first)[:80]
    return conv


def _reply(turn: Turn, entry: dict, kept: list | None) -> Reply:
    """One model entry of a turn as a reply; ``kept``: the utterance ids of the reply it replaces."""
    reply = Reply(turn=turn, position=entry["within_turn_id"], source="prism-import", status=Reply.Status.DONE,
                  score=entry.get("score"))
    extra = {}
    for key, value in entry.items():
        if key in ("turn", "role", "within_turn_id", "score"):
            continue
        if key == "content" and fits(TEXT, value) and value is not None:
            reply.content = value
        elif key == "model_name" and fits(TEXT, value, 120) and value is not None:
            reply.model_name = value
        elif key == "model_provider" and fits(TEXT, value, 120):
            reply.model_provider = value
        elif key == "if_chosen" and isinstance(value, bool):
            reply.chosen = value
        else:
            extra[key] = value
    for key in ("content", "model_name", "model_provider", "if_chosen"):
        if key not in entry:
            extra.setdefault(key, None)
    reply.extra = extra
    if kept:
        reply.prism_utterance_id, reply.prism_interaction_id, reply.utterance_extra = kept
    return reply


def _import_utterances(batch: list[tuple[int, dict]], file: str, report: ImportReport, seen: dict) -> None:
    wanted = {}
    for line, record in batch:
        cid = require_id(record, "conversation_id", file, line)
        turn = require_int(record.get("turn"), file, line, "turn")
        position = require_int(record.get("within_turn_id"), file, line, "within_turn_id")
        check_score(record.get("score"), file, line, "score")
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
        derived = utterance_values(conversation, user_id, turn, reply)
        ids = {"utterance_id": None, "interaction_id": None}
        extra = {}
        for k, value in record.items():
            if k in ids and fits(TEXT, value, 120) and value is not None:
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
