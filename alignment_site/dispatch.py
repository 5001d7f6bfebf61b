"""Putting work on the Celery queues from the web process (no torch here)."""

import logging

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
