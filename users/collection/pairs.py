"""Preference pairs derived from the ratings, in the conversational format TRL
uses (and the training library reads):

    {"user_id", "conversation_id", "turn", "prompt": [messages], "chosen": [message],
     "rejected": [message], "score_chosen", "score_rejected"} (+ "profile" when asked)

How a turn's rated replies become pairs is the pairing strategy
(``trainer.core.pairing``): by default the chosen reply against each other one
whose score is at least ``min_margin`` lower (ties, and replies without a
score, give no pair); ``all`` pairs every reply with each one rated at least
``min_margin`` lower; ``weighted`` is the default's pairs with a ``weight``
each, its margin over the mean margin of the pairs given. The prompt is the
dialog so far: earlier turns with their chosen replies, then this turn's user
message.
"""

from __future__ import annotations

import json
from typing import Iterator

from django.db.models import Avg, Count, F, Prefetch

from trainer.core.pairing import DEFAULT, check, turn_pairs
from users.models import Conversation, Reply, Turn
from users.prism.ids import exported_conversation_id, exported_user_id


def pair_rejected_replies(*, min_margin: int = 1, users=None, pairing: str = DEFAULT):
    """Every pair as one row, a losing reply joined with its turn's winning one (``turn__replies``), as a
    queryset (for counting in SQL): the pairs ``preference_pairs`` gives under ``pairing``."""
    winner = {"turn__replies__score__gte": F("score") + max(1, min_margin)}
    if check(pairing) != "all":  # in the same filter() as the score: one join, the winner is the chosen reply
        winner.update(chosen=False, turn__replies__chosen=True)
    qs = Reply.objects.filter(score__isnull=False, **winner)
    return qs if users is None else qs.filter(turn__conversation__user__in=users)


def pair_counts_by_user(*, min_margin: int = 1, users=None, pairing: str = DEFAULT) -> dict[int, int]:
    rows = (pair_rejected_replies(min_margin=min_margin, users=users, pairing=pairing)
            .values("turn__conversation__user").annotate(n=Count("id")))
    return {row["turn__conversation__user"]: row["n"] for row in rows}


def preference_pairs(*, users=None, min_margin: int = 1, with_profile: bool = False, chunk_size: int = 200,
                     since=None, until=None, pairing: str = DEFAULT) -> Iterator[dict]:
    """Stream the pairs of ``users`` (all when None), conversation by conversation, under ``pairing``;
    ``since``/``until`` (dates, inclusive) keep conversations started in that range. Margin-weighted pairs
    carry ``weight``: their margin over the mean margin of all the pairs given (worked out first, in SQL)."""
    if check(pairing) == "weighted":
        rows = pair_rejected_replies(min_margin=min_margin, users=users, pairing=pairing)
        if since:
            rows = rows.filter(turn__conversation__created_at__date__gte=since)
        if until:
            rows = rows.filter(turn__conversation__created_at__date__lte=until)
        weight_scale = rows.aggregate(m=Avg(F("turn__replies__score") - F("score")))["m"]
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
            for chosen, rejected in turn_pairs([(r, r.score, r.chosen) for r in replies], pairing, min_margin):
                pair = {
                    "user_id": user_id, "conversation_id": conversation_id, "turn": turn.index,
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": chosen.content}],
                    "rejected": [{"role": "assistant", "content": rejected.content}],
                    "score_chosen": chosen.score, "score_rejected": rejected.score,
                }
                if pairing == "weighted":
                    pair["weight"] = (chosen.score - rejected.score) / weight_scale
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
