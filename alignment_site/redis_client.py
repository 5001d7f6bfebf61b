"""The web process's Redis connections (token streams, rate limits, login throttling); Celery has its own."""

import redis
import redis.asyncio as aredis
from django.conf import settings

_sync_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    return _sync_client


def async_client() -> aredis.Redis:
    # The read timeout must outlast the longest blocking XREAD (5 s) the relay makes.
    return aredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=30)
