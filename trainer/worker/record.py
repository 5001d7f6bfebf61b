"""What the worker writes about a run besides its metrics: its folder, its log of what happened (``run.log``,
the last lines of which the run page shows), the phase line, and its end. Shared by the one-process path
(``training``), the processes of a group (``child``) and the worker watching a group (``group``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.utils import timezone

from trainer.models import RUN_LOG, TrainingRun, run_folder
from trainer.worker.patience import patiently

log = logging.getLogger(__name__)


def append_to_run_log(run_id: int, text: str) -> None:
    """One timestamped line in the run's ``run.log``."""
    try:
        folder = run_folder(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / RUN_LOG).open("a", encoding="utf-8") as f:
            f.write(f"{timezone.now():%Y-%m-%d %H:%M:%S} {text}\n")
    except OSError:  # a full or read-only disk must not fail the run; the database keeps its state
        log.exception("could not write run %s's log", run_id)


class ClaimLost(RuntimeError):
    """The run is no longer this worker's: it was failed by bookkeeping (no heartbeat) and perhaps resumed by
    another worker. Whatever this worker would write now would overwrite the truth, so it stops."""


@dataclass(frozen=True)
class Claim:
    """What a worker holds while it trains a run: the run, its own name and the attempt it claimed. Every write
    of the worker matches all three (and a running status), so a worker that lost the run writes nothing."""

    run_id: int
    worker: str
    attempt: int

    @classmethod
    def of(cls, run_id: int) -> "Claim":
        """The claim as the database holds it now (right after ``run_claim``)."""
        worker, attempt = TrainingRun.objects.filter(pk=run_id).values_list("worker", "attempts").get()
        return cls(run_id, worker, attempt)

    def rows(self):
        return TrainingRun.objects.filter(pk=self.run_id, status=TrainingRun.Status.RUNNING, worker=self.worker,
                                          attempts=self.attempt)

    def update(self, **fields) -> None:
        """Write ``fields`` while the claim holds; raise ``ClaimLost`` when it does not."""
        if not patiently(lambda: self.rows().update(**fields), f"run {self.run_id}"):
            raise ClaimLost(f"run {self.run_id} is no longer attempt {self.attempt} of {self.worker}")

    def check(self) -> None:
        if not patiently(self.rows().exists, f"run {self.run_id}"):
            raise ClaimLost(f"run {self.run_id} is no longer attempt {self.attempt} of {self.worker}")


def phase(run_id: int, text: str, claim: Claim | None = None, *, name: str = "", done: int | None = None,
          total: int | None = None) -> None:
    """What the worker is doing now, in words, and (``name``, ``done`` of ``total``) the count inside it for the
    page's bar (also a heartbeat); with ``claim``, only while it holds."""
    write(run_id, claim, phase=text, phase_name=name[:40], phase_done=done, phase_total=total,
          heartbeat_at=timezone.now())


def write(run_id: int, claim: Claim | None, **fields) -> None:
    """Update the run, waiting out a database that does not answer: fenced on ``claim`` when there is one
    (``ClaimLost`` when it no longer holds)."""
    if claim is not None:
        claim.update(**fields)
    else:
        patiently(lambda: TrainingRun.objects.filter(pk=run_id).update(**fields), f"run {run_id}")


def finish(run_id: int, status: str, *, only_running: bool = False, claim: Claim | None = None, **fields) -> bool:
    """End the run with ``status`` (and its error, results...); ``only_running``: unless it has ended already;
    ``claim``: only while this worker's claim holds. Whether it was written."""
    runs = TrainingRun.objects.filter(pk=run_id) if claim is None else claim.rows()
    if only_running:
        runs = runs.filter(status=TrainingRun.Status.RUNNING)
    written = bool(patiently(lambda: runs.update(status=status, finished_at=timezone.now(), phase="", phase_name="",
                                                 phase_done=None, phase_total=None, cancel_requested=False,
                                                 **fields), f"run {run_id}"))
    if written:
        append_to_run_log(run_id, f"{status}{': ' + fields['error'] if fields.get('error') else ''}")
    else:
        append_to_run_log(run_id, f"not written ({status}): the run is no longer this worker's")
    return written
