"""Failed logins, counted per account and per address in Redis: past a limit the login form refuses
before it checks the password, and says how long to wait. A successful login clears the account's count.

When Redis cannot be reached, logins are not throttled (and a warning is logged): the site stays usable.
"""

from __future__ import annotations

import logging
import unicodedata

import redis
from django.conf import settings

from alignment_site.redis_client import client

log = logging.getLogger(__name__)


def _keys(username: str, address: str) -> list[tuple[str, int]]:
    account = unicodedata.normalize("NFKC", username or "").casefold()
    return [(f"login-failures:account:{account}", settings.LOGIN_FAILURES_PER_ACCOUNT),
            (f"login-failures:address:{address}", settings.LOGIN_FAILURES_PER_ADDRESS)]


def wait_seconds(username: str, address: str) -> int:
    """0 when a login may be tried; else the seconds until the account or address may try again."""
    try:
        pipe = client().pipeline()
        keys = _keys(username, address)
        for key, _ in keys:
            pipe.get(key)
            pipe.ttl(key)
        values = pipe.execute()
    except redis.RedisError as exc:
        log.warning("login throttling is off: Redis is unreachable (%r)", exc)
        return 0
    waits = [max(int(ttl), 1) for (_, limit), count, ttl in zip(keys, values[::2], values[1::2])
             if count is not None and int(count) >= limit]
    return max(waits, default=0)


def record_failure(username: str, address: str) -> None:
    try:
        pipe = client().pipeline()
        for key, _ in _keys(username, address):
            pipe.incr(key)
            pipe.expire(key, settings.LOGIN_LOCKOUT_SECONDS, nx=True)  # the window starts at the first failure
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("login failure not counted: Redis is unreachable (%r)", exc)


def clear(username: str, address: str) -> None:
    try:
        client().delete(_keys(username, address)[0][0])
    except redis.RedisError:
        pass
