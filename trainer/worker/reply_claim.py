"""What a generate worker holds while it writes a reply: its claim (every write fenced on it) and a heartbeat
thread for the slow moments (loading a version) when the writing thread cannot touch the reply itself."""

from __future__ import annotations

import logging
import threading

from django.utils import timezone

from users.models import Reply

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5  # well inside REPLY_STALL_SECONDS (15 s at least, 120 by default)


class ReplyLost(RuntimeError):
    """The reply is no longer this attempt's (failed by bookkeeping, or retried and claimed again): stop writing."""


class ReplyClaim:
    """What a worker holds while it writes a reply: the reply, the worker and the time it claimed it (a Retry
    queues the reply again and the next claim has another time). Every write matches all three and a
    streaming status, so an attempt that lost the reply writes nothing over the truth."""

    def __init__(self, reply_id: int, worker: str, at):
        self.reply_id, self.worker, self.at = reply_id, worker, at

    def rows(self):
        return Reply.objects.filter(pk=self.reply_id, status=Reply.Status.STREAMING, worker=self.worker,
                                    started_at=self.at)

    def touch(self) -> None:
        if not self.rows().update(heartbeat_at=timezone.now()):
            raise ReplyLost(f"reply {self.reply_id} is no longer this attempt's")


class Beating:
    """Touch the claimed reply's heartbeat from a thread while something slow happens in this one (loading a
    version under the serving lock can take minutes), so bookkeeping does not take a busy worker for a dead
    one. Fenced on the claim; a database error skips one beat."""

    def __init__(self, claim: ReplyClaim):
        self.claim = claim
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"reply-heartbeat-{claim.reply_id}", daemon=True)

    def _beat(self) -> None:
        from django.db import DatabaseError, connection

        try:
            while not self._stop.wait(HEARTBEAT_SECONDS):
                try:
                    self.claim.touch()
                except ReplyLost:
                    return
                except DatabaseError as exc:
                    log.warning("heartbeat of reply %s missed: %r", self.claim.reply_id, exc)
                    connection.close()
        finally:
            connection.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
