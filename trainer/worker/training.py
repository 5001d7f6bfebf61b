"""The train worker's side of a run: claim it, gather its pairs, train with
progress and cancel hooks, evaluate, and publish the artifacts atomically.

Runs in the Celery worker (imports torch through trainer.core); the web
process never imports this module.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from trainer import services
from trainer.core import provision
from trainer.models import SPLIT_FILE, RunLog, TrainingRun, run_folder
from trainer.worker.patience import best_effort, patiently
from trainer.worker.record import Claim, ClaimLost, append_to_run_log, finish, phase, write

log = logging.getLogger(__name__)


class Heartbeat:
    """Touch the run's heartbeat from a thread, so a long step does not look like a dead worker (``table``: any
    model whose rows have a status and a heartbeat_at, e.g. a personalization evaluation; ``fence``: more
    fields the row must still have, the worker's claim). A database error (a PostgreSQL restart, SQLite busy)
    does not end the thread: the connection is dropped and the next beat tries again."""

    def __init__(self, run_id: int, table=TrainingRun, fence: dict | None = None, status: str | None = None,
                 every: float | None = None):
        self.run_id, self.table, self.fence = run_id, table, dict(fence or {})
        self.status = status or table.Status.RUNNING  # the row's status while it is being worked on
        self.every = every  # seconds between beats (default TRAIN_HEARTBEAT_SECONDS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def _beat(self) -> None:
        from django.db import connection

        def touch():
            return self.table.objects.filter(pk=self.run_id, status=self.status,
                                             **self.fence).update(heartbeat_at=timezone.now())

        try:
            while not self._stop.wait(self.every or settings.TRAIN_HEARTBEAT_SECONDS):
                best_effort(touch, f"heartbeat of {self.table.__name__} {self.run_id}")
        finally:
            connection.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


def gather_pairs(data_filter: dict) -> list:
    """The run's pairs from the database, as the training library's Pair objects."""
    from django.contrib.auth import get_user_model

    from trainer import selectors
    from trainer.core.data import pair_from_json
    from trainer.core.pairing import DEFAULT
    from users.collection.pairs import preference_pairs

    counts = selectors.pair_counts(data_filter)
    users = get_user_model().objects.filter(pk__in=list(counts))
    # Simulated people carry their hidden group, so evaluation can report accuracy per group.
    groups = selectors.synthetic_groups(users)
    pairs = []
    for n, row in enumerate(preference_pairs(users=users, min_margin=int(data_filter.get("min_margin", 1)),
                                             since=data_filter.get("since"), until=data_filter.get("until"),
                                             pairing=data_filter.get("pairing", DEFAULT))):
        if row["user_id"] in groups:
            row["group"] = groups[row["user_id"]]
        pairs.append(pair_from_json(row, where=f"pair {n + 1}"))
    return pairs


def run_split(run: TrainingRun, pairs: list, *, record: bool = False):
    """The run's seen/unseen and train/held-out split of ``pairs``. Its first attempt makes it (seeded) and,
    with ``record``, keeps it in the run's folder; from then on a resumed attempt and every evaluation apply
    that record, so pairs rated since or people who withdrew since move no conversation from one part to
    another (a held-out conversation never becomes a training one). Runs trained before the record existed
    are split again, as they were."""
    import json

    from alignment_site.files import write_once
    from trainer.core.config import TrainConfig
    from trainer.core.data import split_as_recorded, split_pairs, split_settings

    path = run_folder(run.pk) / SPLIT_FILE
    if path.exists():
        return split_as_recorded(pairs, json.loads(path.read_text()))
    split = split_pairs(pairs, **split_settings(run.data_filter, TrainConfig.from_dict(run.config).seed))
    if record:  # the processes of a group agree on the first one written
        return split_as_recorded(pairs, json.loads(write_once(path, json.dumps(split.keys()))))
    return split


def worker_name(celery_hostname: str = "") -> str:
    """The name a run or an evaluation records for who took it: the Celery worker's own name (``train@host``),
    the one the queue and status pages list; outside a worker (a command run here, a benchmark) host and pid."""
    return celery_hostname or f"{socket.gethostname()}:{os.getpid()}"


def execute(run_id: int, worker: str = "") -> str:
    worker = worker_name(worker)
    services.runs_reap_stale()
    if services.baseline_skip_if_main_ended(run_id=run_id):
        return TrainingRun.Status.CANCELLED
    if not services.run_claim(run_id=run_id, worker=worker):
        log.info("run %s is not queued (already taken or finished): nothing to do", run_id)
        return "skipped"
    claim = Claim.of(run_id)
    with Heartbeat(run_id, fence={"worker": claim.worker, "attempts": claim.attempt}):
        try:
            run = TrainingRun.objects.get(pk=run_id)
            append_to_run_log(run_id, f"claimed by {worker} (attempt {run.attempts}, {run.processes} "
                                      f"process{'es' if run.processes > 1 else ''})")
            if run.processes > 1:  # the heartbeat above covers the whole group
                from trainer.worker import group

                return group.train_in_group(run, claim=claim)
            return _train(run, claim=claim)
        except ClaimLost as exc:  # failed by bookkeeping meanwhile (and perhaps resumed elsewhere): hands off
            log.warning("run %s: stopped writing: %s", run_id, exc)
            append_to_run_log(run_id, f"attempt {claim.attempt} by {worker} stopped: the run is no longer its own")
            return "superseded"
        except Exception as exc:  # every failure ends as a reason a person can act on
            log.exception("run %s failed", run_id)
            finish(run_id, TrainingRun.Status.FAILED, claim=claim, error=_reason(exc))
            return TrainingRun.Status.FAILED


def _reason(exc: Exception) -> str:
    from trainer.core.data import DataError
    from trainer.core.loop import TrainingError

    if isinstance(exc, (TrainingError, DataError, ValueError, provision.ProvisionError)):
        return str(exc)
    return f"{exc.__class__.__name__}: {exc}"


def _train(run: TrainingRun, rank: int = 0, claim: Claim | None = None) -> str:
    """Train, evaluate and publish ``run``. Under ``accelerate launch`` every process runs this with its
    rank: all train their share; only process 0 writes to the database and evaluates and saves. With
    ``claim`` (one process) every write is fenced on it: a lost claim raises ``ClaimLost`` at the next write
    or cancel check, before anything more is written to the database or the run's folder."""
    from trainer.core.config import TrainConfig
    from trainer.core.loop import train

    config = TrainConfig.from_dict(run.config)
    location = provision.resolve(settings.BASE_MODEL, settings.DATA_DIR)
    main = rank == 0
    if main:
        phase(run.pk, "collecting pairs", claim)
    pairs = gather_pairs(run.data_filter)
    if not pairs:
        raise ValueError("The selected data has no preference pairs: collect ratings first, "
                         "or lower the minimum number of pairs per person.")
    split = run_split(run, pairs, record=True)
    folder = run_folder(run.pk)
    checkpoints = folder / "checkpoints"
    from trainer.core.checkpoint import latest_checkpoint

    resumed = latest_checkpoint(checkpoints)
    summary = {**run.data_summary, **split.summary(), "pairs": len(pairs), "base_model": location.name}
    if resumed is not None:
        summary["resumed_from"] = resumed.name
    if run.processes > 1:
        summary["processes"] = run.processes
    if main:  # the step count the loop will run (the same function), before the model takes a while to load
        write(run.pk, claim, data_summary=summary, phase="loading the model",
              total_steps=config.total_steps(len(split.train)))

    started = time.perf_counter()
    first_step: list[int] = []
    clock = StepClock()
    trackers = run_trackers(run, config.report_to if main else "",
                            params={**config.to_dict(), **split.summary(), "run": run.pk, "name": run.name})

    def log_metrics(kind: str, step: int, values: dict) -> None:
        patiently(lambda: services.run_log_metrics(run_id=run.pk, kind=kind, step=step, values=_finite(values)),
                  f"run {run.pk}")

    def progress(step: int, total: int, metrics: dict | None) -> None:
        if not first_step:
            first_step.append(step)
        write(run.pk, claim, step=step, total_steps=total, heartbeat_at=timezone.now(), step_seconds=clock.tick())
        if metrics:
            log_metrics(RunLog.Kind.TRAIN, step, metrics)
            trackers.log(step, metrics, prefix="train/")
            append_to_run_log(run.pk, f"step {step}/{total}: loss {metrics.get('loss', float('nan')):.4f}, "
                                      f"accuracy {metrics.get('rewards/accuracies', float('nan')):.3f}")

    def should_cancel() -> bool:  # the loop takes process 0's answer in every process
        if not main:
            return False
        if claim is not None:
            claim.check()  # lost: stop here, before the loop writes a checkpoint
        return patiently(TrainingRun.objects.filter(pk=run.pk, cancel_requested=True).exists, f"run {run.pk}")

    def on_diagnostics(step: int, report: dict) -> None:
        log_metrics(RunLog.Kind.DIAG, step, {k: v for k, v in report.items() if k != "step"})

    try:  # the trackers are closed however this ends
        result = train(config, location.path, split.train, checkpoint_dir=checkpoints,
                       progress=progress if main else None, should_cancel=should_cancel, users=split.seen_users,
                       on_diagnostics=on_diagnostics, on_phase=PhaseText(run.pk, claim=claim) if main else None,
                       log=lambda msg: log.info("run %s: %s", run.pk, msg))
        if not main:  # process 0 evaluates, saves and reports
            return result.status
        elapsed = time.perf_counter() - started
        summary.update(result.data)
        summary["first_step_this_attempt"] = first_step[0] if first_step else None
        if result.status == "cancelled":
            finish(run.pk, TrainingRun.Status.CANCELLED, claim=claim, data_summary=summary,
                   error=f"Cancelled at step {result.step}/{result.total_steps}; resume continues from there.")
            return TrainingRun.Status.CANCELLED

        steps_done = result.step - (first_step[0] - 1 if first_step else 0)
        summary["pairs_per_second"] = steps_done * config.batch_size / elapsed if elapsed > 0 else None
        phase(run.pk, "evaluating on held-out pairs", claim)
        evaluation = _evaluate(result, split)
        log_metrics(RunLog.Kind.EVAL, result.step, evaluation.get("metrics", {}))
        trackers.log(result.step, {**evaluation.get("metrics", {}), **tracked_accuracy(evaluation)})
    finally:
        trackers.finish()
    phase(run.pk, "saving the model", claim)
    relative = _publish(result, folder, base_model=location.path,
                        metrics={"history": result.history, "diagnostics": result.diagnostics,
                                 "evaluation": evaluation, "data": summary})
    if not finish(run.pk, TrainingRun.Status.COMPLETED, claim=claim, data_summary=summary, evaluation=evaluation,
                  user_map=_user_map(result), diagnostics=[_finite(d) for d in result.diagnostics],
                  artifacts=relative):
        raise ClaimLost(f"run {run.pk} was no longer this worker's when it finished")
    try:  # a personalized run and its baseline both done: "does it personalize?" is asked at once
        from trainer.personalization.services import evaluation_start_after_training

        evaluation_start_after_training(run_id=run.pk)
    except Exception:  # the run itself is done and saved; the evaluation can be started by hand
        log.exception("could not start the personalization evaluation after run %s", run.pk)
    return TrainingRun.Status.COMPLETED


def run_trackers(run: TrainingRun, report_to, *, params: dict | None):
    """The trackers ``report_to`` names, on the tracker run of ``run`` (``params``: its settings when it starts;
    None to go on with it, as its personalization evaluation does)."""
    from trainer.core.tracking import Trackers

    return Trackers.start(report_to, name=f"run-{run.pk}", params=params, where=settings.TRACKING_DIR)


def tracked_accuracy(evaluation: dict) -> dict:
    """The held-out accuracy overall, for seen and unseen people and per group, as tracker metrics."""
    values = {"eval/accuracy": evaluation.get("accuracy")}
    for part in ("seen", "unseen"):
        values[f"eval/accuracy/{part}"] = (evaluation.get(part) or {}).get("accuracy")
    for group, figures in (evaluation.get("groups") or {}).items():
        values[f"eval/accuracy/group/{group}"] = figures.get("accuracy")
    return values


class StepClock:
    """The time of an optimizer step, as a moving average of the measured ones (the first step of an attempt
    is not measured: it starts with loading the model); None until a step has been measured."""

    def __init__(self, weight: float = 0.3):
        self.weight, self.last, self.mean = weight, None, None

    def tick(self) -> float | None:
        now = time.monotonic()
        if self.last is not None:
            took = now - self.last
            self.mean = took if self.mean is None else self.weight * took + (1 - self.weight) * self.mean
        self.last = now
        return self.mean


class PhaseText:
    """The loop's (phase, done, total) as the run's phase line, written at most every 2 s (and at each change):
    the page shows progress inside a step too (model load, tokenising, micro-batches with their reference pass)."""

    def __init__(self, run_id: int, every: float = 2.0, claim: Claim | None = None):
        self.run_id, self.every, self.claim = run_id, every, claim
        self.shown, self.at = "", 0.0

    def __call__(self, name: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if name == self.shown and now - self.at < self.every and (total is None or done < total):
            return
        if name != self.shown:
            append_to_run_log(self.run_id, name)
        self.shown, self.at = name, now
        if total is None:
            text = name
        elif name == "training":
            text = f"training: {done} of {total} micro-batches"
        else:
            text = f"{name}: {done} of {total}"
        phase(self.run_id, text, self.claim, name=name, done=done if total else None, total=total)


def _finite(values: dict) -> dict:
    """JSON has no NaN or infinity: store them as null."""
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in values.items()}


def _evaluate(result, split) -> dict:
    from trainer.core.evaluate import evaluate

    device = next(result.model.parameters()).device
    held_out = split.test_seen + split.test_unseen
    if not held_out:
        return {"note": "No held-out pairs: every user had a single conversation."}
    outcome = evaluate(result.model, result.tokenizer, result.user_index, result.config, held_out, device=device)
    return _clean(outcome.to_dict())


def _clean(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _user_map(result) -> list[dict]:
    """Every user's vectors projected onto the first two principal components."""
    import torch

    user_model = result.model.user_model
    if user_model is None or len(result.user_index) < 2:
        return []
    with torch.no_grad():
        rows = torch.arange(len(result.user_index) + 1)
        vectors = user_model(rows).flatten(1).float().cpu()  # (N+1, T*H), row 0 = generic
        centred = vectors - vectors[1:].mean(0, keepdim=True)
        _, _, v = torch.linalg.svd(centred[1:], full_matrices=False)
        xy = centred @ v[:2].T  # (N+1, 2)
    names = ["(generic)", *result.user_index.users]
    return [{"user_id": name, "x": round(float(x), 5), "y": round(float(y), 5), "generic": i == 0}
            for i, (name, (x, y)) in enumerate(zip(names, xy.tolist()))]


def _publish(result, folder: Path, *, base_model: str, metrics: dict) -> str:
    """save_run writes beside the final folder and renames it in: never half a model."""
    from trainer.core.artifacts import save_run

    final = save_run(folder / "model", result.model, result.user_index, result.config, base_model=base_model,
                     metrics=metrics)
    return str(final.relative_to(settings.ARTIFACTS_DIR))
