"""Personalized chat (issue 6): writes. Chat with the active version, blind
comparisons, quick ratings and rewrites on chat replies, and the fast fit
that a person's new pairs trigger.

Every function takes the person's own rows (the views fetch them through the
scoped selectors), so nobody can rate, compare or refit for someone else.
"""

from __future__ import annotations

import random
import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from trainer import dispatch
from users import collection
from users.models import Conversation, Reply, Turn, VectorFit
from users.services import chat_send, reply_enqueue, validate_message

FAST_FIT_TASK = "trainer.fast_fit"
# The three columns of a comparison; the page shows them as Reply 1-3 in a random order.
# The prefix keeps them apart from chat replies (which get the quick rating); the worker drops it.
COMPARE_SOURCES = ("compare-personal", "compare-generic", "compare-base")
COMPARE_LABELS = {"compare-personal": "Your vectors", "compare-generic": "Generic vectors",
                  "compare-base": "Base model"}


class RateLimited(ValidationError):
    pass


def request_rate_check(*, user) -> None:
    """Count one message against the person's per-minute allowance (in Redis); raise when it is used up.

    When Redis is down the message goes through: the broker error that follows says what is wrong.
    """
    import redis

    from users import streams

    limit = settings.CHAT_RATE_PER_MINUTE
    if not limit:
        return
    window = int(time.time() // 60)
    key = f"ratelimit:{user.pk}:{window}"
    try:
        pipe = streams.client().pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        count = pipe.execute()[0]
    except redis.RedisError:
        return
    if count > limit:
        wait = 60 - int(time.time()) % 60
        raise RateLimited(f"You have sent {limit} messages in the last minute, the most allowed. "
                          f"Wait {wait} seconds and send again.")


def personal_chat_send(*, conversation: Conversation, text: str) -> Reply:
    """A chat message answered by the active version with the person's vectors (the base model when none is active)."""
    validate_message(text)
    request_rate_check(user=conversation.user)
    return chat_send(conversation=conversation, text=text, source="personal")


def compare_start(*, user, text: str, rng: random.Random | None = None) -> Conversation:
    """One prompt, three replies (personal vectors, generic vectors, base model) in a random order."""
    from users.personal_selectors import active_run

    text = validate_message(text)
    if active_run() is None:
        raise ValidationError("No model version is active yet, so there is nothing personal to compare. "
                              "Staff activate a trained version on the runs page.")
    request_rate_check(user=user)
    sources = list(COMPARE_SOURCES)
    (rng or random.Random()).shuffle(sources)
    with transaction.atomic():
        conversation = Conversation.objects.create(user=user, kind=Conversation.Kind.COMPARE, title=text[:80],
                                                   opening_prompt=text)
        turn = Turn.objects.create(conversation=conversation, index=0, user_message=text)
        replies = Reply.objects.bulk_create([Reply(turn=turn, position=i, source=s, model_provider="local")
                                             for i, s in enumerate(sources)])
        ids = [r.pk for r in replies]
        transaction.on_commit(lambda: [reply_enqueue(reply_id=i) for i in ids])
    return conversation


def compare_rate(*, turn: Turn, scores: dict[int, int], pick: int | None = None) -> VectorFit | None:
    """Store the blind 1–100 ratings (the best reply becomes chosen: pairs as in collection); maybe refit."""
    if turn.conversation.kind != Conversation.Kind.COMPARE:
        raise ValidationError("Only comparisons are rated here.")
    collection.turn_rate(turn=turn, scores=scores, pick=pick)
    return fastfit_maybe_enqueue(user=turn.conversation.user)


def reply_quick_rate(*, reply: Reply, score: int, rewrite: str = "") -> VectorFit | None:
    """Rate a chat reply 1–100; a rewrite (what the person wanted) is stored as the chosen reply,
    which makes the pair rewrite ≻ reply and continues the conversation with it."""
    if reply.turn.conversation.kind != Conversation.Kind.CHAT:
        raise ValidationError("Only chat replies get a quick rating.")
    if reply.status != Reply.Status.DONE:
        raise ValidationError("Wait until the reply has finished before rating it.")
    if not isinstance(score, int) or not collection.SCORE_MIN <= score <= collection.SCORE_MAX:
        raise ValidationError("Rate the reply from 1 (Terrible) to 100 (Perfect).")
    rewrite = (rewrite or "").strip()
    if rewrite:
        rewrite = validate_message(rewrite)
    with transaction.atomic():
        locked = Reply.objects.select_for_update().get(pk=reply.pk)
        if Reply.objects.filter(turn_id=locked.turn_id, source="rewrite").exists():
            raise ValidationError("This reply already has your rewrite.")
        locked.score = score
        if rewrite:
            locked.score = min(score, collection.SCORE_MAX - 1)  # the rewrite must win the pair
            locked.chosen = False
            position = max(Reply.objects.filter(turn_id=locked.turn_id).values_list("position", flat=True)) + 1
            Reply.objects.create(turn_id=locked.turn_id, position=position, source="rewrite", content=rewrite,
                                 status=Reply.Status.DONE, score=collection.SCORE_MAX, chosen=True,
                                 model_name="rewrite by the user", finished_at=timezone.now())
        locked.save(update_fields=["score", "chosen"])
    reply.refresh_from_db()
    if not rewrite:
        return None  # a single rating makes no pair on its own
    return fastfit_maybe_enqueue(user=reply.turn.conversation.user)


def fastfit_maybe_enqueue(*, user) -> VectorFit | None:
    """Queue a refit of the person's vectors once FASTFIT_EVERY_PAIRS new pairs have come in since the last one."""
    from users.personal_selectors import active_run, new_pairs_since_fit

    run = active_run()
    if run is None or (run.config or {}).get("user_model") == "none":
        return None
    with transaction.atomic():
        if VectorFit.objects.select_for_update().filter(
                user=user, run=run, status__in=[VectorFit.Status.QUEUED, VectorFit.Status.RUNNING]).exists():
            return None
        total, fresh = new_pairs_since_fit(user=user, run=run)
        if fresh < settings.FASTFIT_EVERY_PAIRS:
            return None
        fit = VectorFit.objects.create(user=user, run=run, pairs_total=total)
        transaction.on_commit(lambda: fastfit_enqueue(fit_id=fit.pk))
    return fit


def fastfit_enqueue(*, fit_id: int) -> bool:
    return dispatch.enqueue_row(FAST_FIT_TASK, VectorFit, fit_id, queue="train")
