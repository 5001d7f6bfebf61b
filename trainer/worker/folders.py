"""Where a run's files live on the worker side, and its log of what the worker did."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.utils import timezone

log = logging.getLogger(__name__)


def run_folder(run_id: int) -> Path:
    return settings.ARTIFACTS_DIR / "runs" / str(run_id)


def journal(run_id: int, text: str) -> None:
    """One timestamped line in the run's ``run.log``: the run page shows the last of them."""
    try:
        folder = run_folder(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "run.log").open("a", encoding="utf-8") as f:
            f.write(f"{timezone.now():%Y-%m-%d %H:%M:%S} {text}\n")
    except OSError:  # a full or read-only disk must not fail the run; the database keeps its state
        log.exception("could not write run %s's log", run_id)
