"""Token streams in Redis: the worker appends, the web relays as SSE.

Each reply has a Redis Stream of entries ``{"t": delta}``; the last entry is
``{"end": status}``. A stop request is a key the worker checks every token.
"""

import redis
import redis.asyncio as aredis
from django.conf import settings

from users.models import Reply

_sync_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    return _sync_client


def async_client() -> aredis.Redis:
    # The read timeout must outlast the longest blocking XREAD (5 s) the relay makes.
    return aredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=30)


def request_stop(reply: Reply) -> None:
    client().set(reply.stop_key, "1", ex=settings.STREAM_TTL_SECONDS)


def delete(reply: Reply) -> None:
    try:
        client().delete(reply.stream_key, reply.stop_key)
    except redis.RedisError:
        pass


def parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
