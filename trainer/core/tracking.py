"""A run's metrics sent to the trackers the field uses, when asked (``report_to``, as in TRL): TensorBoard, MLflow
and trackio, each writing to a local store by default.

    trackers = Trackers.start("tensorboard,mlflow", name="run-12", params={...}, where=Path("data/tracking"))
    trackers.log(step, {"loss": 0.61, ...}, prefix="train/")
    trackers.finish()

Training metrics go as ``train/<name>`` and the held-out evaluation's as ``eval/<name>``, with TRL's names
(``loss``, ``rewards/accuracies``, ``rewards/margins``, ``logps/chosen``...); the run's settings as
hyperparameters. The personalization evaluation, which ends later, goes on in the same tracker runs
(``params=None``: the settings are there already) with its win-rates as ``eval/personalization/...``. A
tracker that cannot start stops the run before training (the person asked for it); one that fails later is
logged and skipped: hours of training are not lost to a dashboard that went away.

Stores, under ``where``: ``tensorboard/<name>/`` (event files), ``mlflow.db`` (unless ``MLFLOW_TRACKING_URI`` names
another MLflow store or server) and ``trackio/`` (trackio's local database).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)

TRACKERS = {"tensorboard": "TensorBoard", "mlflow": "MLflow", "trackio": "trackio"}  # name -> what it is called
PROJECT = "personal-alignment"  # MLflow's experiment and trackio's project


class TrackingError(RuntimeError):
    """A tracker the run was asked to report to could not start."""


def parse_report_to(value: str | list | None) -> list[str]:
    """``report_to`` as a list of trackers ("" or "none": none); an unknown name is refused with the choices."""
    names = value if isinstance(value, list) else [v.strip() for v in (value or "").split(",")]
    names = [n for n in names if n and n != "none"]
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ValueError(f"report_to: unknown tracker {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(TRACKERS)} (comma-separated), or leave it empty")
    return list(dict.fromkeys(names))


class _TensorBoard:
    def __init__(self, name: str, params: dict | None, where: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(where / "tensorboard" / name))  # a new event file beside any earlier one
        if params is not None:
            self.writer.add_text("settings", "\n".join(f"    {k}: {v}" for k, v in sorted(params.items())))

    def log(self, step: int, values: dict) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def finish(self) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, name: str, params: dict | None, where: Path):
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{where / 'mlflow.db'}"
        self.client = MlflowClient(uri)
        experiment = self.client.get_experiment_by_name(PROJECT)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(PROJECT)
        earlier = self.client.search_runs([experiment_id], filter_string=f"tags.`mlflow.runName` = '{name}'",
                                          max_results=1)
        if earlier:  # a resumed run goes on in the same MLflow run
            self.run_id = earlier[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self.run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
            self.client.log_batch(self.run_id, params=[mlflow.entities.Param(k, str(v)[:6000])
                                                       for k, v in sorted((params or {}).items())])

    def log(self, step: int, values: dict) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def finish(self) -> None:
        self.client.set_terminated(self.run_id)


class _Trackio:
    def __init__(self, name: str, params: dict | None, where: Path):
        os.environ.setdefault("TRACKIO_DIR", str(where / "trackio"))  # read by trackio when it is imported
        import trackio

        self.trackio = trackio
        self.run = trackio.init(project=PROJECT, name=name, config=params, resume="allow", embed=False,
                                auto_log_cpu=False, auto_log_gpu=False)

    def log(self, step: int, values: dict) -> None:
        self.run.log(values, step=step)

    def finish(self) -> None:
        self.run.finish()


_OPEN = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "trackio": _Trackio}


class Trackers:
    """The trackers one run reports to (none: every call does nothing)."""

    def __init__(self, opened: dict):
        self.opened = opened

    @classmethod
    def start(cls, report_to, *, name: str, params: dict | None, where: Path) -> "Trackers":
        """The trackers ``report_to`` names, each opening (or going on with) the run ``name``; ``params``: the
        run's settings, or None when going on with a run that logged them when it started."""
        opened = {}
        for tracker in parse_report_to(report_to):
            try:
                where.mkdir(parents=True, exist_ok=True)
                opened[tracker] = _OPEN[tracker](name, params, where)
            except ImportError as exc:
                raise TrackingError(f"report_to={tracker}: its package is not installed here ({exc.name}); "
                                    f"pip install {tracker if tracker != 'mlflow' else 'mlflow-skinny sqlalchemy'} "
                                    "on the train worker, or leave it out") from exc
            except Exception as exc:
                raise TrackingError(f"report_to={tracker} could not start: {exc.__class__.__name__}: {exc}") from exc
        return cls(opened)

    def log(self, step: int, values: dict, *, prefix: str = "") -> None:
        """The finite numbers of ``values`` at ``step``, each name after ``prefix`` ("train/")."""
        finite = {prefix + k: float(v) for k, v in values.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        for tracker, sink in list(self.opened.items()):
            try:
                sink.log(step, finite)
            except Exception:
                log.exception("report_to=%s: logging step %s failed; it is left out from now on", tracker, step)
                self.opened.pop(tracker)

    def finish(self) -> None:
        for tracker, sink in self.opened.items():
            try:
                sink.finish()
            except Exception:
                log.exception("report_to=%s: could not close the run", tracker)
        self.opened = {}
