"""Relay a reply's Redis Stream to the browser as Server-Sent Events.

Every ``token`` event carries the whole text so far, so a browser that
reconnects (with or without Last-Event-ID) always ends up showing exactly the
reply, never a duplicated piece. The closing ``done`` event carries the
finished reply's HTML.
"""

import asyncio
import logging
import secrets
import time

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.utils.html import escape

from alignment_site.redis_client import async_client
from users.conversations import streams
from users.conversations.services import queue_position
from users.models import Reply

log = logging.getLogger(__name__)

BLOCK_MS = 5000
KEEPALIVE_SECONDS = 15
OPEN_STALE_SECONDS = 60  # four missed keep-alives


async def reply_stream(request, reply_id: int):
    user = await request.auser()
    if not user.is_authenticated:
        return HttpResponse("Log in to follow this reply.", status=403)
    reply = await Reply.objects.filter(pk=reply_id, turn__conversation__user=user).afirst()
    if reply is None:
        return HttpResponse(status=404)
    last_seen = streams.last_event_id(request.headers.get("Last-Event-ID"))
    connection = secrets.token_hex(8)
    if not reply.is_finished:
        open_now = await _register(user.pk, connection)
        if open_now > settings.SSE_MAX_PER_PERSON:
            await _unregister(user.pk, connection)
            return HttpResponse(f"You are following {open_now - 1} replies at once, the most allowed: close other "
                                "tabs of this site, then reload this page.", status=429,
                                content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(_events(reply, last_seen, user.pk, connection),
                                     content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _open_key(user_id: int) -> str:
    return f"sse-open:{user_id}"


async def _register(user_id: int, connection: str) -> int:
    """Note this open stream (scored by when it was last alive); how many the person has open now.
    An entry not refreshed for OPEN_STALE_SECONDS (a process that died mid-stream) no longer counts."""
    client, key, now = async_client(), _open_key(user_id), time.time()
    try:
        pipe = client.pipeline()
        pipe.zremrangebyscore(key, 0, now - OPEN_STALE_SECONDS)
        pipe.zadd(key, {connection: now})
        pipe.zcard(key)
        pipe.expire(key, OPEN_STALE_SECONDS)
        return (await pipe.execute())[2]
    except (redis.RedisError, OSError):
        return 0  # the stream itself reports that Redis is unreachable
    finally:
        await client.aclose()


async def _still_open(client, user_id: int, connection: str) -> None:
    """A keep-alive: this stream's entry is alive now, and the person's set lives another OPEN_STALE_SECONDS
    (without the expiry refreshed, a stream open longer than that would lose the whole set, and with it the
    count the cap is checked against)."""
    key = _open_key(user_id)
    try:
        pipe = client.pipeline()
        pipe.zadd(key, {connection: time.time()})
        pipe.expire(key, OPEN_STALE_SECONDS)
        await pipe.execute()
    except (redis.RedisError, OSError):
        pass


async def _unregister(user_id: int, connection: str) -> None:
    client = async_client()
    try:
        await client.zrem(_open_key(user_id), connection)
    except (redis.RedisError, OSError):
        pass
    finally:
        await client.aclose()


def _ordinal(n: int) -> str:
    return "next" if n == 1 else f"number {n}"


def _event(name: str, data: str, event_id: str | None = None) -> str:
    lines = [f"event: {name}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return "\n".join(lines) + "\n\n"


async def _final_html(reply_id: int) -> str:
    # Rendered in a thread: the template follows relations (a cut reply's Continue form needs its conversation),
    # which are database queries, not allowed on the event loop.
    return await sync_to_async(_render_final)(reply_id)


def _render_final(reply_id: int) -> str:
    reply = Reply.objects.select_related("turn").get(pk=reply_id)
    return render_to_string("chat/detail.html#reply", {"reply": reply, "streamed": True})


async def _events(reply: Reply, last_seen: tuple[int, int], user_id: int, connection: str):
    if reply.is_finished:
        yield _event("done", await _final_html(reply.pk))
        return
    client = async_client()
    cursor, text = "0-0", ""
    shown_position = None
    last_keepalive = time.monotonic()
    try:
        while True:
            try:
                batch = await client.xread({reply.stream_key: cursor}, block=BLOCK_MS, count=200)
            except (redis.RedisError, OSError) as exc:
                log.warning("reply %s: lost Redis while streaming: %r", reply.pk, exc)
                yield _event("failure", "Lost contact with Redis while streaming; the reply is kept when it finishes. Reload in a moment.")
                return
            for _key, entries in batch or []:
                newest_text_id = None
                for raw_id, fields in entries:
                    entry_id = raw_id.decode()
                    cursor = entry_id
                    if b"t" in fields:
                        text += fields[b"t"].decode()
                        if streams.parse_id(entry_id) > last_seen:
                            newest_text_id = entry_id
                    elif b"end" in fields:
                        if newest_text_id:
                            yield _event("token", escape(text), newest_text_id)
                        yield _event("done", await _final_html(reply.pk), entry_id)
                        return
                if newest_text_id:
                    # One event per read: when the browser is behind it gets the
                    # latest text at once instead of every intermediate step.
                    yield _event("token", escape(text), newest_text_id)
            now = time.monotonic()
            if not batch:
                status = await Reply.objects.filter(pk=reply.pk).values_list("status", flat=True).afirst()
                if status in Reply.FINISHED:  # finished and its stream already expired or never written
                    yield _event("done", await _final_html(reply.pk))
                    return
                # A stalled worker is the workers' bookkeeping to find (trainer.tasks), not a viewer's.
                if status == Reply.Status.QUEUED:
                    position = await sync_to_async(queue_position)(reply)
                    if position != shown_position:
                        shown_position = position
                        yield _event("waiting", f'<span class="muted">Waiting for the model: {_ordinal(position)} '
                                                f'in line.</span>')
            if now - last_keepalive > KEEPALIVE_SECONDS:
                last_keepalive = now
                await _still_open(client, user_id, connection)
                yield ": keepalive\n\n"
    except asyncio.CancelledError:  # the browser went away; the worker carries on
        raise
    finally:
        await client.aclose()
        await _unregister(user_id, connection)
