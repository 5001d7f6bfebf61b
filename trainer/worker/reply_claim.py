"""What a generate worker holds while it writes a reply: its claim (every write fenced on it) and a heartbeat
(``beating``) for the slow moments (loading a version) when the writing thread cannot touch the reply itself."""

from __future__ import annotations

from django.utils import timezone

from trainer.worker.patience import best_effort
from users.models import Reply

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
        """The reply's heartbeat, fenced on the claim. A database that does not answer skips this beat (the
        reply goes on streaming; bookkeeping waits REPLY_STALL_SECONDS, far longer than a beat)."""
        touched = best_effort(lambda: self.rows().update(heartbeat_at=timezone.now()),
                              f"reply {self.reply_id}'s heartbeat", skipped=1)
        if not touched:
            raise ReplyLost(f"reply {self.reply_id} is no longer this attempt's")


def beating(claim: ReplyClaim):
    """The claimed reply's heartbeat, touched from a thread while something slow happens in this one (loading a
    version under the serving lock can take minutes), fenced on the claim."""
    from trainer.worker.training import Heartbeat

    return Heartbeat(claim.reply_id, table=Reply, status=Reply.Status.STREAMING,
                     fence={"worker": claim.worker, "started_at": claim.at}, every=HEARTBEAT_SECONDS)
