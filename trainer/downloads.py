"""A version as one download for the field's tools (``export_version``'s folder, zipped): asked for on the run page,
written by a train worker (it needs torch), kept in the run's folder. The web process only reads what is there.

    runs/<id>/downloads/version-<id>-peft.zip   the finished download
    runs/<id>/downloads/.pending                asked for, not written yet (its time)
    runs/<id>/downloads/error.txt               why the last attempt failed
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from alignment_site import dispatch
from trainer.models import TrainingRun, run_folder

EXPORT_TASK = "trainer.export_version"
EXPORT_STALL_SECONDS = 15 * 60  # a download still not written after this: its worker was stopped


def folder(run_id: int) -> Path:
    return run_folder(run_id) / "downloads"


def zip_path(run_id: int) -> Path:
    return folder(run_id) / f"version-{run_id}-peft.zip"


def pending_path(run_id: int) -> Path:
    return folder(run_id) / ".pending"


def error_path(run_id: int) -> Path:
    return folder(run_id) / "error.txt"


@dataclass(frozen=True)
class DownloadState:
    state: str  # none | preparing | ready | failed
    size: int = 0  # bytes of the finished zip
    error: str = ""
    name: str = ""  # the finished zip's file name


def download_state(run: TrainingRun) -> DownloadState:
    ready, pending, error = zip_path(run.pk), pending_path(run.pk), error_path(run.pk)
    if pending.exists():
        if time.time() - pending.stat().st_mtime > EXPORT_STALL_SECONDS:
            return DownloadState("failed", error=f"The train worker did not finish the download within "
                                                 f"{EXPORT_STALL_SECONDS // 60} minutes (it was stopped or is busy "
                                                 "with a long run). Ask again.")
        return DownloadState("preparing")
    if error.exists():
        return DownloadState("failed", error=error.read_text())
    if ready.exists():
        return DownloadState("ready", size=ready.stat().st_size, name=ready.name)
    return DownloadState("none")


class DownloadError(RuntimeError):
    """The download cannot be asked for; the message says why."""


def download_request(*, run: TrainingRun) -> None:
    """Ask a train worker to write the download (again)."""
    if run.status != TrainingRun.Status.COMPLETED or not run.artifacts:
        raise DownloadError(f"{run} has no saved model to export.")
    if download_state(run).state == "preparing":
        return
    folder(run.pk).mkdir(parents=True, exist_ok=True)
    error_path(run.pk).unlink(missing_ok=True)
    pending_path(run.pk).write_text(str(time.time()))
    try:
        dispatch.send(EXPORT_TASK, run.pk, queue="train")
    except dispatch.BrokerUnavailable as exc:
        pending_path(run.pk).unlink(missing_ok=True)
        raise DownloadError(f"The train worker cannot be reached ({exc}); try again when it is back.") from exc
