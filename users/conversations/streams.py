"""Token streams in Redis: the worker appends, the web relays as SSE.

Each reply has a Redis Stream of entries ``{"t": delta}``; the last entry is
``{"end": status}``. A stop request is a key the worker checks every token.
"""

import redis
from django.conf import settings

from alignment_site.redis_client import client
from users.models import Reply


def request_stop(reply: Reply) -> None:
    client().set(reply.stop_key, "1", ex=settings.STREAM_TTL_SECONDS)


def delete(reply: Reply) -> None:
    try:
        client().delete(reply.stream_key, reply.stop_key)
    except redis.RedisError:
        pass


def finish(reply: Reply, status: str) -> None:
    """Close the reply's stream with its final status (relays stop there); it expires after STREAM_TTL_SECONDS."""
    pipe = client().pipeline()
    pipe.xadd(reply.stream_key, {"end": status})
    pipe.expire(reply.stream_key, settings.STREAM_TTL_SECONDS)
    pipe.delete(reply.stop_key)
    pipe.execute()


def text(reply: Reply) -> str:
    """What has been streamed for this reply so far (empty when Redis cannot tell)."""
    try:
        entries = client().xrange(reply.stream_key)
    except redis.RedisError:
        return ""
    return "".join(fields[b"t"].decode() for _, fields in entries if b"t" in fields)


def parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def last_event_id(header: str | None) -> tuple[int, int]:
    """A browser's ``Last-Event-ID``: the stream entry it saw last, or (0, 0) (send everything again) when the
    header is missing or not an entry id (``<ms>-<seq>``, digits): a forged or garbled one is not an error."""
    try:
        ms, seq = parse_id((header or "0-0").strip())
    except ValueError:
        return 0, 0
    return (ms, seq) if ms >= 0 and seq >= 0 else (0, 0)
