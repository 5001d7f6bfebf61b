"""Failed logins, counted per account and per address in Redis: past a limit the login form refuses
before it checks the password, and says how long to wait. A successful login clears the account's count.

The per-account limit slows someone guessing one account's password from addresses it has never logged in
from; it does not lock the owner out: an address the account logged in from successfully within
``KNOWN_ADDRESS_SECONDS`` is known to it, and from a known address only the per-address limit applies. So
an attacker's five wrong guesses lock the account for strangers, not for its owner at home.

When Redis cannot be reached, logins are not throttled (and a warning is logged): the site stays usable.
"""

from __future__ import annotations

import logging
import unicodedata

import redis
from django.conf import settings

from alignment_site.redis_client import client

log = logging.getLogger(__name__)

KNOWN_ADDRESS_SECONDS = 30 * 24 * 3600  # an address stays known to an account this long after a good login


def _account(username: str) -> str:
    return unicodedata.normalize("NFKC", username or "").casefold()


def _known_key(username: str) -> str:
    return f"login-known:{_account(username)}"


def _keys(username: str, address: str) -> list[tuple[str, int]]:
    account = _account(username)
    return [(f"login-failures:account:{account}", settings.LOGIN_FAILURES_PER_ACCOUNT),
            (f"login-failures:address:{address}", settings.LOGIN_FAILURES_PER_ADDRESS)]


def wait_seconds(username: str, address: str) -> int:
    """0 when a login may be tried; else the seconds until the account or address may try again."""
    try:
        keys = _keys(username, address)
        if address and client().sismember(_known_key(username), address):
            keys = keys[1:]  # the owner's own address: only the address's limit
        pipe = client().pipeline()
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
    """After a good login: the account's count is cleared and the address becomes known to the account."""
    try:
        pipe = client().pipeline()
        pipe.delete(_keys(username, address)[0][0])
        if address:
            pipe.sadd(_known_key(username), address)
            pipe.expire(_known_key(username), KNOWN_ADDRESS_SECONDS)
        pipe.execute()
    except redis.RedisError:
        pass


# --- sign-ups -------------------------------------------------------------------------------------------
SIGNUP_WINDOW_SECONDS = 3600


def signup_wait_seconds(address: str) -> int:
    """0 when this address may make another account; else the seconds until it may (``SIGNUPS_PER_ADDRESS``
    accounts an hour). Not throttled when Redis cannot be reached."""
    key = f"signups:address:{address}"
    try:
        pipe = client().pipeline()
        pipe.get(key)
        pipe.ttl(key)
        count, ttl = pipe.execute()
    except redis.RedisError as exc:
        log.warning("sign-up throttling is off: Redis is unreachable (%r)", exc)
        return 0
    return max(int(ttl), 1) if count is not None and int(count) >= settings.SIGNUPS_PER_ADDRESS else 0


def record_signup(address: str) -> None:
    key = f"signups:address:{address}"
    try:
        pipe = client().pipeline()
        pipe.incr(key)
        pipe.expire(key, SIGNUP_WINDOW_SECONDS, nx=True)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("sign-up not counted: Redis is unreachable (%r)", exc)
