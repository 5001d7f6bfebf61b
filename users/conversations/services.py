"""The life of a reply, shared by chat and PRISM collection: the message checks,
the per-person generation budget, queueing for the `generate` worker after commit,
stop and retry, and what the worker feeds the model for a reply."""

import time
from datetime import timedelta

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from alignment_site import dispatch
from alignment_site.redis_client import client
from users.conversations import streams
from users.models import Conversation, Reply, ReplySource, Turn, new_stream_token

GENERATE_TASK = "trainer.generate_reply"


class RateLimited(ValidationError):
    pass


def generation_budget_take(*, user, replies: int = 1) -> None:
    """Count one message against the person's budget, which every path that asks for replies shares;
    raise ``RateLimited`` with what to do when it is used up.

    Two limits: messages per minute (``CHAT_RATE_PER_MINUTE``, counted in Redis; when Redis is down the
    message goes through and the broker error that follows says what is wrong), and replies waiting
    or being written at once (``GENERATION_MAX_PENDING``, counted in the database), so no burst of
    requests can fill the queue that everyone shares.
    """
    most = settings.GENERATION_MAX_PENDING
    pending = Reply.objects.filter(turn__conversation__user=user,
                                   status__in=[Reply.Status.QUEUED, Reply.Status.STREAMING]).count()
    if pending + replies > most:
        raise RateLimited(f"{pending} of your replies are still waiting or being written (at most {most} at a "
                          "time). Wait until they finish, then send again.")
    limit = settings.CHAT_RATE_PER_MINUTE
    if not limit:
        return
    window = int(time.time() // 60)
    key = f"ratelimit:{user.pk}:{window}"
    try:
        pipe = client().pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        count = pipe.execute()[0]
    except redis.RedisError:
        return
    if count > limit:
        wait = 60 - int(time.time()) % 60
        raise RateLimited(f"You have sent {limit} messages in the last minute, the most allowed. "
                          f"Wait {wait} seconds and send again.")


def validate_message(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationError("Write a message first: an empty message cannot be sent.")
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(text) > limit:
        raise ValidationError(
            f"This message is {len(text):,} characters long; the limit is {limit:,}. Shorten it and send again."
        )
    return text


def reply_enqueue(*, reply_id: int) -> bool:
    return dispatch.enqueue_row(GENERATE_TASK, Reply, reply_id, queue=settings.GENERATE_QUEUE)


def reply_retry(*, reply: Reply, from_statuses=(Reply.Status.FAILED, Reply.Status.STOPPED)) -> Reply:
    """Put a reply back in the queue, from scratch (it counts against the budget): a failed or stopped one
    (Retry), or with ``from_statuses`` a done one (Regenerate, checked by its caller)."""
    if reply.status in from_statuses:
        generation_budget_take(user=reply.turn.conversation.user)
    # A new stream token: the new attempt streams under a key of its own, so a late write of the old attempt
    # (still running on a worker that lost the reply) cannot mix into it.
    updated = Reply.objects.filter(pk=reply.pk, status__in=list(from_statuses)).update(
        status=Reply.Status.QUEUED, content="", error="", token_count=0, started_at=None, finished_at=None,
        heartbeat_at=None, worker="", stream_token=new_stream_token())
    if updated:
        streams.delete(reply)
        transaction.on_commit(lambda: reply_enqueue(reply_id=reply.pk))
    reply.refresh_from_db()
    return reply


def reply_stop(*, reply: Reply) -> None:
    """Ask the worker to stop; a reply still in the queue is stopped at once."""
    if Reply.objects.filter(pk=reply.pk, status=Reply.Status.QUEUED).update(
        status=Reply.Status.STOPPED, finished_at=timezone.now()
    ):
        return
    streams.request_stop(reply)


def history_messages(*, reply: Reply) -> list[dict]:
    """The chat messages a reply answers: earlier turns with their chosen replies, then this turn."""
    turn = reply.turn
    earlier = (
        Turn.objects.filter(conversation_id=turn.conversation_id, index__lt=turn.index)
        .prefetch_related("replies")
        .order_by("index")
    )
    messages: list[dict] = []
    for past in earlier:
        messages.append({"role": "user", "content": past.user_message})
        chosen = next((r for r in past.replies.all() if r.chosen and r.content), None)
        if chosen is not None:
            messages.append({"role": "assistant", "content": chosen.content})
    messages.append({"role": "user", "content": turn.user_message})
    return messages


def reply_generation_settings(*, reply: Reply) -> tuple[list[dict], dict]:
    """What the worker feeds ``stream_generate`` for this reply: the messages
    (with the source's system prompt first, when it has one) and the source's
    sampling settings. A source with no ReplySource row (plain chat's "base")
    gets no system prompt and the default sampling."""
    messages = history_messages(reply=reply)
    collecting = reply.turn.conversation.kind in Conversation.PRISM_KINDS  # candidates people rate
    cap = settings.COLLECTION_MAX_NEW_TOKENS if collecting else settings.CHAT_MAX_NEW_TOKENS
    sampling: dict = {"max_new_tokens": cap, "temperature": settings.CHAT_TEMPERATURE, "top_p": settings.CHAT_TOP_P}
    if collecting and settings.COLLECTION_REPETITION_PENALTY != 1.0:
        sampling["repetition_penalty"] = settings.COLLECTION_REPETITION_PENALTY
    source = ReplySource.objects.filter(name=reply.source).first()
    if source is not None:
        if source.system_prompt:
            messages = [{"role": "system", "content": source.system_prompt}, *messages]
        sampling.update(temperature=source.temperature, top_p=source.top_p)
        if source.max_new_tokens:
            sampling["max_new_tokens"] = source.max_new_tokens
    return messages, sampling


def replies_reap_orphans(*, worker: str | None = None) -> int:
    """Fail the replies being written by a worker that is gone, keeping the text it had streamed.

    Without ``worker``: every streaming reply whose worker has not touched it for REPLY_STALL_SECONDS
    (workers touch their replies every few seconds while waiting for a batch or writing, so a busy
    worker never looks stalled). With ``worker``, when that worker (re)starts: every streaming reply it
    held, since the process that was writing them is gone. Run by every worker at start-up and
    periodically (see ``trainer.tasks``); nothing waits for a browser to notice. Returns how many.
    """
    stall = settings.REPLY_STALL_SECONDS
    orphans = Reply.objects.filter(status=Reply.Status.STREAMING)
    if worker is not None:
        orphans = orphans.filter(worker=worker)
        reason = (f"The model worker {worker} restarted while writing this reply, so it stopped here. "
                  "Press Retry to have it written again.")
    else:
        cutoff = timezone.now() - timedelta(seconds=stall)
        orphans = orphans.filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff))
        reason = (f"The model worker writing this reply stopped answering for over {stall} s (it was stopped or "
                  "its machine went down), so the reply stopped here. Press Retry to have it written again.")
    reaped = 0
    for reply in orphans:
        partial = streams.text(reply) or reply.content
        reaped += Reply.objects.filter(pk=reply.pk, status=Reply.Status.STREAMING,
                                       heartbeat_at=reply.heartbeat_at).update(
            status=Reply.Status.FAILED, content=partial, error=reason, finished_at=timezone.now())
        try:
            streams.finish(reply, Reply.Status.FAILED)
        except redis.RedisError:
            pass  # the relay finds the row failed at its next look
    return reaped


def replies_reap_lost() -> int:
    """Fail the queued replies whose request no longer exists in the broker (Redis restarted, or its message was
    dropped): nothing would ever write them, and each would hold one of its person's pending slots and push
    everyone's place in line back. They are failed with the reason; Retry sends a new request."""
    lost = dispatch.rows_lost(Reply, GENERATE_TASK, settings.GENERATE_QUEUE, after_seconds=settings.QUEUED_LOST_SECONDS)
    if not lost:
        return 0
    reason = ("The request for this reply was lost before a model worker took it (the message broker, Redis, "
              "restarted or dropped it). Press Retry to ask again.")
    return Reply.objects.filter(pk__in=lost, status=Reply.Status.QUEUED).update(
        status=Reply.Status.FAILED, error=reason, finished_at=timezone.now())


def queue_position(reply: Reply) -> int:
    """1 for the next reply a worker will take; replies are taken in the order they were queued."""
    return Reply.objects.filter(status=Reply.Status.QUEUED, pk__lt=reply.pk).count() + 1
