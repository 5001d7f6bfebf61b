"""Relay a reply's Redis Stream to the browser as Server-Sent Events.

Every ``token`` event carries the whole text so far, so a browser that
reconnects (with or without Last-Event-ID) always ends up showing exactly the
reply, never a duplicated piece. The closing ``done`` event carries the
finished reply's HTML.
"""

import asyncio
import logging
import time

import redis
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import escape

from users.conversations import streams
from users.models import Reply

log = logging.getLogger(__name__)

BLOCK_MS = 5000
KEEPALIVE_SECONDS = 15


async def reply_stream(request, reply_id: int):
    user = await request.auser()
    if not user.is_authenticated:
        return HttpResponse("Log in to follow this reply.", status=403)
    reply = await Reply.objects.filter(pk=reply_id, turn__conversation__user=user).afirst()
    if reply is None:
        return HttpResponse(status=404)
    last_seen = streams.parse_id(request.headers.get("Last-Event-ID") or "0-0")
    response = StreamingHttpResponse(_events(reply, last_seen), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _event(name: str, data: str, event_id: str | None = None) -> str:
    lines = [f"event: {name}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return "\n".join(lines) + "\n\n"


async def _final_html(reply_id: int) -> str:
    reply = await Reply.objects.aget(pk=reply_id)
    return render_to_string("chat/detail.html#reply", {"reply": reply, "streamed": True})


async def _events(reply: Reply, last_seen: tuple[int, int]):
    if reply.is_finished:
        yield _event("done", await _final_html(reply.pk))
        return
    client = streams.async_client()
    cursor, text = "0-0", ""
    last_activity = time.monotonic()
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
                last_activity = time.monotonic()
            now = time.monotonic()
            if not batch:
                status = await Reply.objects.filter(pk=reply.pk).values_list("status", flat=True).afirst()
                if status in Reply.FINISHED:  # finished and its stream already expired or never written
                    yield _event("done", await _final_html(reply.pk))
                    return
                if status == Reply.Status.STREAMING and now - last_activity > settings.REPLY_STALL_SECONDS:
                    await Reply.objects.filter(pk=reply.pk, status=Reply.Status.STREAMING).aupdate(
                        status=Reply.Status.FAILED, finished_at=timezone.now(),
                        error=f"The worker stopped sending tokens for {settings.REPLY_STALL_SECONDS} s "
                              f"(it may have been restarted). Press Retry.",
                    )
                    continue
            if now - last_keepalive > KEEPALIVE_SECONDS:
                last_keepalive = now
                yield ": keepalive\n\n"
    except asyncio.CancelledError:  # the browser went away; the worker carries on
        raise
    finally:
        await client.aclose()
