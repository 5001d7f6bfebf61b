"""Preference pairs derived from the ratings, in the conversational format TRL
uses (and the training library reads):

    {"user_id", "conversation_id", "turn", "prompt": [messages], "chosen": [message],
     "rejected": [message], "score_chosen", "score_rejected"} (+ "profile" when asked)

In every turn the chosen reply is paired with each rejected one whose score is
at least ``min_margin`` lower (ties, and replies without a score, give no
pair). The prompt is the dialog so far: earlier turns with their chosen
replies, then this turn's user message.
"""

from __future__ import annotations

import json
from typing import Iterator

from django.db.models import Count, F, Prefetch

from users.models import Conversation, Reply, Turn
from users.prism.ids import exported_conversation_id, exported_user_id


def pair_rejected_replies(*, min_margin: int = 1, users=None):
    """Every rejected reply that makes a pair, as a queryset (for counting in SQL)."""
    margin = max(1, min_margin)
    qs = Reply.objects.filter(chosen=False, score__isnull=False, turn__replies__chosen=True,
                              turn__replies__score__gte=F("score") + margin)
    return qs if users is None else qs.filter(turn__conversation__user__in=users)


def pair_counts_by_user(*, min_margin: int = 1, users=None) -> dict[int, int]:
    rows = (pair_rejected_replies(min_margin=min_margin, users=users)
            .values("turn__conversation__user").annotate(n=Count("id")))
    return {row["turn__conversation__user"]: row["n"] for row in rows}


def preference_pairs(*, users=None, min_margin: int = 1, with_profile: bool = False,
                     chunk_size: int = 200, since=None, until=None) -> Iterator[dict]:
    """Stream the pairs of ``users`` (all when None), conversation by conversation;
    ``since``/``until`` (dates, inclusive) keep conversations started in that range."""
    margin = max(1, min_margin)
    qs = (Conversation.objects.select_related("user__profile")
          .prefetch_related(Prefetch("turns", queryset=Turn.objects.order_by("index").prefetch_related(
              Prefetch("replies", queryset=Reply.objects.order_by("position")))))
          .order_by("pk"))
    if users is not None:
        qs = qs.filter(user__in=users)
    if since:
        qs = qs.filter(created_at__date__gte=since)
    if until:
        qs = qs.filter(created_at__date__lte=until)
    for conversation in qs.iterator(chunk_size=chunk_size):
        profile = getattr(conversation.user, "profile", None)
        user_id = exported_user_id(conversation.user, profile)
        conversation_id = exported_conversation_id(conversation)
        history: list[dict] = []
        for turn in conversation.turns.all():
            prompt = [*history, {"role": "user", "content": turn.user_message}]
            replies = list(turn.replies.all())
            for chosen in (r for r in replies if r.chosen and r.score is not None):
                for rejected in replies:
                    if rejected.chosen or rejected.score is None or chosen.score - rejected.score < margin:
                        continue
                    pair = {
                        "user_id": user_id, "conversation_id": conversation_id, "turn": turn.index,
                        "prompt": prompt,
                        "chosen": [{"role": "assistant", "content": chosen.content}],
                        "rejected": [{"role": "assistant", "content": rejected.content}],
                        "score_chosen": chosen.score, "score_rejected": rejected.score,
                    }
                    if with_profile and profile is not None and profile.self_description:
                        pair["profile"] = profile.self_description
                    yield pair
            history = prompt
            chosen = next((r for r in replies if r.chosen), None)
            if chosen is not None:
                history = [*prompt, {"role": "assistant", "content": chosen.content}]


def pairs_export_lines(**kwargs) -> Iterator[str]:
    for pair in preference_pairs(**kwargs):
        yield json.dumps(pair, ensure_ascii=False) + "\n"
