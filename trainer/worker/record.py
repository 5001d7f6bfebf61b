"""What the worker writes about a run besides its metrics: its folder, its log of what happened (``run.log``,
the last lines of which the run page shows), the phase line, and its end. Shared by the one-process path
(``training``), the processes of a group (``child``) and the worker watching a group (``group``)."""

from __future__ import annotations

import logging

from django.utils import timezone

from trainer.models import RUN_LOG, TrainingRun, run_folder

log = logging.getLogger(__name__)


def journal(run_id: int, text: str) -> None:
    """One timestamped line in the run's ``run.log``."""
    try:
        folder = run_folder(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / RUN_LOG).open("a", encoding="utf-8") as f:
            f.write(f"{timezone.now():%Y-%m-%d %H:%M:%S} {text}\n")
    except OSError:  # a full or read-only disk must not fail the run; the database keeps its state
        log.exception("could not write run %s's log", run_id)


def phase(run_id: int, text: str) -> None:
    """What the worker is doing now, in words (also a heartbeat)."""
    TrainingRun.objects.filter(pk=run_id).update(phase=text, heartbeat_at=timezone.now())


def finish(run_id: int, status: str, *, only_running: bool = False, **fields) -> None:
    """End the run with ``status`` (and its error, results...); ``only_running``: unless it has ended already."""
    journal(run_id, f"{status}{': ' + fields['error'] if fields.get('error') else ''}")
    runs = TrainingRun.objects.filter(pk=run_id)
    if only_running:
        runs = runs.filter(status=TrainingRun.Status.RUNNING)
    runs.update(status=status, finished_at=timezone.now(), phase="", cancel_requested=False, **fields)
