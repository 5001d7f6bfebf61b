"""Worker writes that ride out a short database outage (a PostgreSQL restart or failover, SQLite busy).

A training run or a reply should not fail because the database did not answer for a few seconds: the
work itself lives in the worker. ``patiently`` tries a database operation again, on a fresh connection,
until ``DB_PATIENCE_SECONDS`` have passed, then lets the error through (the run or reply then fails with
it, or, when even that write cannot be made, bookkeeping fails it once its heartbeat is old).

Only for operations that may run twice: a conditional update, a read. Never inside a transaction, where a
closed connection would lose what the transaction wrote before.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

log = logging.getLogger(__name__)

UNANSWERED = (OperationalError, InterfaceError)  # the server is gone or the connection broken (not bad SQL)


def patiently(operation, what: str, *, first_wait: float = 0.5, longest_wait: float = 5.0):
    """``operation()``, tried again with growing waits while the database does not answer, for up to
    ``DB_PATIENCE_SECONDS``; ``what`` names it in the log."""
    deadline = time.monotonic() + settings.DB_PATIENCE_SECONDS
    wait = first_wait
    while True:
        try:
            return operation()
        except UNANSWERED as exc:
            if connection.in_atomic_block or time.monotonic() + wait > deadline:
                raise
            first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            log.warning("%s: the database did not answer (%s); trying again in %.1f s", what, first_line, wait)
            connection.close()  # the next try opens a fresh connection
            time.sleep(wait)
            wait = min(wait * 2, longest_wait)


def best_effort(operation, what: str, *, skipped=None):
    """``operation()`` once; a database that does not answer is logged and skipped (a heartbeat, a progress
    line: the next one carries the news), and ``skipped`` returned in place of the operation's value."""
    try:
        return operation()
    except UNANSWERED as exc:
        log.warning("%s skipped: the database did not answer (%r)", what, exc)
        if not connection.in_atomic_block:
            connection.close()  # the next try opens a fresh connection
        return skipped
