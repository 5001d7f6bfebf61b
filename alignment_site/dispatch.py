"""Putting work on the Celery queues from the web process (no torch here)."""

import ast
import json
import logging
import time

import redis
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from alignment_site.celery import app

log = logging.getLogger(__name__)

BROKER_DOWN = (
    "The message broker (Redis) is not reachable, so no worker could be asked for a reply. "
    "Your message is saved. Start Redis (or check REDIS_URL) and press Retry."
)


class BrokerUnavailable(RuntimeError):
    pass


def send(task_name: str, *args, queue: str) -> None:
    """Publish one task; raise BrokerUnavailable quickly when Redis is down."""
    try:
        app.send_task(task_name, args=list(args), queue=queue, retry=False)
    except (KombuOperationalError, OSError) as exc:
        log.warning("could not publish %s: %s", task_name, exc)
        raise BrokerUnavailable(BROKER_DOWN) from exc


def enqueue_row(task_name: str, model, pk: int, *, queue: str, reason: str | None = None) -> bool:
    """Publish the task for one queued row (a reply, a run, a refit); when Redis is down,
    mark the row failed with a reason a person can act on instead of leaving it queued."""
    try:
        send(task_name, pk, queue=queue)
    except BrokerUnavailable as exc:
        model.objects.filter(pk=pk, status=model.Status.QUEUED).update(
            status=model.Status.FAILED, error=reason or str(exc), finished_at=timezone.now())
        return False
    return True


# --- messages the broker still holds -----------------------------------------------------------------------
# Kombu's Redis transport keeps a queue's waiting messages in a list named after the queue (one more list per
# priority step, the name joined to the step by SEP) and the messages a worker has taken but not yet acknowledged
# (prefetched, or running under acks_late) in the hash UNACKED.
PRIORITY_STEPS = (3, 6, 9)
SEP = "\x06\x16"
UNACKED = "unacked"


def _row_id(message: dict, task_name: str) -> int | None:
    headers = message.get("headers") or {}
    if headers.get("task") != task_name:
        return None
    try:
        args = ast.literal_eval(headers.get("argsrepr") or "()")
        return int(args[0])
    except (ValueError, SyntaxError, TypeError, IndexError):
        return None


def queued_row_ids(task_name: str, queue: str) -> set[int]:
    """The row ids (each task's first argument) of ``task_name``'s messages waiting in ``queue`` or taken by a
    worker and not yet acknowledged. Raises ``redis.RedisError`` when the broker cannot be read."""
    from alignment_site.redis_client import client

    broker = client()
    messages = []
    for name in (queue, *(f"{queue}{SEP}{step}" for step in PRIORITY_STEPS)):
        messages += [_json(item) for item in broker.lrange(name, 0, -1)]
    for item in broker.hvals(UNACKED):  # [message, exchange, routing key]
        taken = _json(item)
        messages.append(taken[0] if isinstance(taken, list) and taken else None)
    rows = (_row_id(m, task_name) if isinstance(m, dict) else None for m in messages)
    return {row for row in rows if row is not None}


def _json(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return None


def rows_lost(model, task_name: str, queue: str, *, after_seconds: float, rows=None) -> list[int]:
    """Rows of ``model`` still QUEUED whose task message is in none of the broker's places, at two looks at
    least ``after_seconds`` apart (between a worker taking a message and claiming its row a look could miss
    both; a message lost with a restarted Redis is missing at every look). ``rows`` narrows the QUEUED rows.
    The first look's time is kept in Redis per row; a row found again starts over. [] when Redis is down."""
    from alignment_site.redis_client import client

    key = f"lost-since:{task_name}"
    try:
        found = queued_row_ids(task_name, queue)
        queued = set((rows if rows is not None else model.objects).filter(status=model.Status.QUEUED)
                     .values_list("pk", flat=True))
        missing = queued - found
        broker, now = client(), time.time()
        seen = {int(k): float(v) for k, v in broker.hgetall(key).items()}
        gone = [pk for pk in seen if pk not in missing]
        pipe = broker.pipeline()
        if gone:
            pipe.hdel(key, *gone)
        fresh = {pk: now for pk in missing if pk not in seen}
        if fresh:
            pipe.hset(key, mapping=fresh)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not look for lost %s messages: %r", task_name, exc)
        return []
    return sorted(pk for pk in missing if pk in seen and now - seen[pk] >= after_seconds)
