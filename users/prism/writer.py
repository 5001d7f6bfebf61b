"""Writing PRISM's three files from the database (streamed, in PRISM's key order)."""

from __future__ import annotations

import json
from typing import IO, Iterator

from django.db.models import Count, Prefetch, Q

from users.models import Conversation, Profile, Reply, Turn
from users.prism.ids import exported_conversation_id, exported_user_id
from users.prism.schema import (
    BATCH,
    CONVERSATION_KEYS,
    FILES,
    HISTORY_KEYS,
    SURVEY_COLUMNS,
    SURVEY_KEYS,
    UTTERANCE_KEYS,
    ordered,
)


def _user_entry(turn: Turn) -> dict:
    return ordered(HISTORY_KEYS, {"turn": turn.index, "role": "user", "content": turn.user_message}, turn.extra)


def _model_entry(turn: Turn, reply: Reply) -> dict:
    values = {"turn": turn.index, "role": "model", "content": reply.content, "model_provider": reply.model_provider,
              "model_name": reply.model_name, "score": reply.score, "if_chosen": reply.chosen,
              "within_turn_id": reply.position}
    return ordered(HISTORY_KEYS, values, reply.extra)


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


def utterance_values(conversation: Conversation, user_id: str, turn: Turn, reply: Reply) -> dict:
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
            yield _dump(ordered(SURVEY_KEYS, values, profile.extra))
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
            yield _dump(ordered(CONVERSATION_KEYS, _conversation_values(conversation, user_id, turns),
                                 conversation.extra))
            continue
        for turn in turns:
            for reply in turn.replies.all():
                if reply.score is None and reply.prism_utterance_id is None and not reply.utterance_extra:
                    continue  # not rated: PRISM has one utterance per rated reply
                values = utterance_values(conversation, user_id, turn, reply)
                yield _dump(ordered(UTTERANCE_KEYS, values, reply.utterance_extra))


def prism_export(*, file: str, out: IO[str], users=None) -> int:
    count = 0
    for line in prism_export_lines(file=file, users=users):
        out.write(line)
        count += 1
    return count


