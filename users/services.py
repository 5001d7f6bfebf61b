"""Writes that span several models: conversations, turns and replies."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from trainer import dispatch
from users.models import Conversation, Reply, Turn

GENERATE_TASK = "trainer.generate_reply"


def conversation_create(*, user, kind: str = Conversation.Kind.CHAT) -> Conversation:
    return Conversation.objects.create(user=user, kind=kind)


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


def chat_send(*, conversation: Conversation, text: str, source: str = "base") -> Reply:
    """Store the user's message and a queued reply, then ask a worker for it.

    The task is published after the commit, so the worker always finds the
    rows; when the broker is down the reply is marked failed with a reason
    and the message stays saved.
    """
    text = validate_message(text)
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        last = locked.turns.order_by("-index").values_list("index", flat=True).first()
        turn = Turn.objects.create(conversation=locked, index=0 if last is None else last + 1, user_message=text)
        reply = Reply.objects.create(turn=turn, position=0, source=source, chosen=True)
        if not locked.title:
            locked.title = text[:80]
        locked.save(update_fields=["title", "updated_at"])
        transaction.on_commit(lambda: reply_enqueue(reply_id=reply.pk))
    return reply


def reply_enqueue(*, reply_id: int) -> bool:
    return dispatch.enqueue_row(GENERATE_TASK, Reply, reply_id, queue="generate")


def reply_retry(*, reply: Reply) -> Reply:
    """Put a failed or stopped reply back in the queue, from scratch."""
    updated = Reply.objects.filter(pk=reply.pk, status__in=[Reply.Status.FAILED, Reply.Status.STOPPED]).update(
        status=Reply.Status.QUEUED, content="", error="", token_count=0, started_at=None, finished_at=None
    )
    if updated:
        _forget_stream(reply)
        transaction.on_commit(lambda: reply_enqueue(reply_id=reply.pk))
    reply.refresh_from_db()
    return reply


def reply_stop(*, reply: Reply) -> None:
    """Ask the worker to stop; a reply still in the queue is stopped at once."""
    from users import streams

    if Reply.objects.filter(pk=reply.pk, status=Reply.Status.QUEUED).update(
        status=Reply.Status.STOPPED, finished_at=timezone.now()
    ):
        return
    streams.request_stop(reply)


def _forget_stream(reply: Reply) -> None:
    from users import streams

    streams.delete(reply)


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
    from users.models import ReplySource

    messages = history_messages(reply=reply)
    sampling: dict = {"max_new_tokens": settings.CHAT_MAX_NEW_TOKENS, "temperature": settings.CHAT_TEMPERATURE,
                      "top_p": settings.CHAT_TOP_P}
    source = ReplySource.objects.filter(name=reply.source).first()
    if source is not None:
        if source.system_prompt:
            messages = [{"role": "system", "content": source.system_prompt}, *messages]
        sampling.update(temperature=source.temperature, top_p=source.top_p)
        if source.max_new_tokens:
            sampling["max_new_tokens"] = source.max_new_tokens
    return messages, sampling
