"""Putting work on the Celery queues from the web process (no torch here)."""

import logging

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
