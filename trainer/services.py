"""Writes on training runs. The worker-side training itself is in training.py."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from alignment_site import dispatch
from trainer.core.config import PLAIN_DPO
from trainer.core.pairing import DEFAULT as DEFAULT_PAIRING
from trainer.core.pairing import STRATEGIES as PAIRINGS
from trainer.models import Activation, RunLog, TrainingRun, run_folder
from trainer.personalization.report import served_worse_note
from trainer.pools import PoolStateError, pool_request

TRAIN_TASK = "trainer.train_run"
PREPARE_TASK = "trainer.prepare_version"

# Before any run of a model has been measured: pair passes per second of the bundled 135M model on a 2-core
# CPU with the cpu preset (0.44 measured by ``python -m bench first_run``, model load included), scaled by
# the model's size.
GUESS_PASSES_PER_SECOND = 0.44
GUESS_PARAMS = 134_515_008
EVALUATION_SHARE = 0.45  # a held-out pair's pass costs about 0.45 of a training pass (measured with the above)


class RunStateError(RuntimeError):
    """The run is not in a state that allows this; the message says why."""


def run_preview(*, data_filter: dict, config: dict, processes: int = 1) -> dict:
    """What a run would be: users, pairs, optimizer steps and a time estimate with its range."""
    from trainer import selectors

    data_filter = selectors.with_flags(data_filter)  # the flags once, not for each read below
    plan = data_plan(selectors.pairs_by_conversation(data_filter), data_filter=data_filter, config=config)
    batch = max(1, int(config.get("batch_size", 32)))
    per_pair = 1 if config.get("user_model", "individual") == "none" else 2
    held_out = plan["pairs"] - plan["train_pairs"]  # evaluated at the end
    passes = plan["steps"] * batch * per_pair + EVALUATION_SHARE * held_out * per_pair
    timing = time_estimate(passes, processes=processes)
    chosen = data_filter.get("pairing", DEFAULT_PAIRING)
    by_pairing = {name: plan["pairs"] if name == chosen else
                  sum(selectors.pairs_by_conversation({**data_filter, "pairing": name}).values())
                  for name in PAIRINGS if name != "weighted"}  # weighted pairs are best-versus-rest's
    return {**plan, **timing, "left_out": selectors.people_left_out(data_filter),
            "by_pairing": [(PAIRINGS[name], n) for name, n in by_pairing.items()]}


def data_plan(keys: dict, *, data_filter: dict, config: dict) -> dict:
    """People, pairs, training pairs and optimizer steps of a run, worked out as its worker will: the same
    seeded split (``plan_split``) and the same step count (``TrainConfig.total_steps``), on pair counts per
    conversation (``selectors.pairs_by_conversation``) instead of the pairs themselves."""
    from trainer.core.config import TrainConfig
    from trainer.core.data import plan_split, split_settings

    train_config = TrainConfig.from_dict(config)
    plan = plan_split(keys, **split_settings(data_filter, train_config.seed))
    train_pairs = sum(keys[key] for key in plan.train)
    return {"users": len({user for user, _ in keys}), "pairs": sum(keys.values()), "train_pairs": train_pairs,
            "steps": train_config.total_steps(train_pairs) if train_pairs else 0}


def time_estimate(passes: float, *, processes: int = 1) -> dict:
    """Seconds for ``passes`` pair passes (training, and evaluation's share), from the throughput measured on
    the newest runs of this base model: those of the machines listening now when there are any (else every
    machine), with the same number of processes when there are any (else all). The range is the slowest and
    fastest of them. Before any measured run: a guess scaled from the bundled model on a 2-core CPU."""
    from trainer import preflight, selectors

    rates = selectors.measured_rates(base_model=_base_model_name())
    hosts = {selectors.worker_host(w.worker) for w in preflight.train_workers()}
    here = [r for r in rates if r["host"] in hosts] or rates
    same = [r for r in here if r["processes"] == processes] or here
    if not same:
        shape = preflight.model_shape()
        seconds = passes / GUESS_PASSES_PER_SECOND * (shape.params / GUESS_PARAMS if shape else 1.0)
        return {"estimated_seconds": seconds, "estimate_low": seconds, "estimate_high": seconds,
                "rate_measured": False, "measured_runs": 0, "measured_on": ""}
    speeds = sorted(r["passes_per_second"] for r in same)
    middle = speeds[len(speeds) // 2]
    return {"estimated_seconds": passes / middle, "estimate_low": passes / speeds[-1],
            "estimate_high": passes / speeds[0], "rate_measured": True, "measured_runs": len(same),
            "measured_on": ", ".join(sorted({r["host"] for r in same}))}


def _base_model_name() -> str:
    from trainer.core import provision

    try:
        return provision.resolve(settings.BASE_MODEL, settings.DATA_DIR).name
    except provision.ProvisionError:
        return settings.BASE_MODEL


class RunDoesNotFit(ValueError):
    """The run's estimated peak memory exceeds what the listening train workers have; ``fit`` says by how much
    and which change would make it fit."""

    def __init__(self, fit):
        super().__init__(fit.refusal())
        self.fit = fit


def run_create(*, created_by, name: str, config: dict, data_filter: dict, with_baseline: bool,
               processes: int = 1, launch_config: str = "", check_fit: bool = True, repeats: int = 1) -> TrainingRun:
    """Create the run (and its plain-DPO baseline on the same data) and queue both after commit; ``repeats`` > 1
    also creates that many runs in all with the next seeds (each with its baseline), repeats of the first.

    ``processes`` > 1 trains it under ``accelerate launch`` (``launch_config``: an accelerate config file on
    the worker). A run that will not fit in the memory of the train workers listening now, or asks for more
    processes than any of them runs, is refused (``RunDoesNotFit``).
    """
    from trainer import preflight, selectors
    from trainer.core.config import TrainConfig  # torch-free: the web may use it

    config = TrainConfig.from_dict(config).to_dict()  # every field stored, defaults filled in
    if processes < 1 or config["batch_size"] % (processes * config["micro_batch_size"]):
        raise ValueError(f"The batch size ({config['batch_size']}) must split into {processes} processes of whole "
                         f"micro-batches of {config['micro_batch_size']}.")
    if check_fit:
        fit = preflight.check(config, processes)
        if not fit.fits:
            raise RunDoesNotFit(fit)
    launch = {"processes": processes, "launch_config": launch_config.strip()}
    if not 1 <= repeats <= 10:
        raise ValueError("Repeat a run with 1 to 10 seeds.")
    queued = []
    keys = selectors.pairs_by_conversation(data_filter)
    with transaction.atomic():
        first = None
        for i in range(repeats):
            seeded = {**config, "seed": config["seed"] + i}
            label = name if repeats == 1 else f"{name or 'run'} · seed {seeded['seed']}"
            # Known now, so the run's page never says "step 0 of ?"; the worker sets it again from the data it finds.
            launch["total_steps"] = data_plan(keys, data_filter=data_filter, config=seeded)["steps"]
            run = TrainingRun.objects.create(name=label, created_by=created_by, config=seeded,
                                             data_filter=data_filter, repeat_of=first, **launch)
            first = first or run
            queued.append(run.pk)
            if with_baseline and config.get("user_model") != "none":
                baseline_config = {**seeded, **PLAIN_DPO}
                baseline = TrainingRun.objects.create(name=f"{run} · plain DPO baseline", created_by=created_by,
                                                      config=baseline_config, data_filter=data_filter, **launch)
                run.baseline = baseline
                run.save(update_fields=["baseline"])
                queued.append(baseline.pk)
        for pk in queued:
            transaction.on_commit(lambda pk=pk: run_enqueue(run_id=pk))
    return first


def run_enqueue(*, run_id: int) -> bool:
    return dispatch.enqueue_row(
        TRAIN_TASK, TrainingRun, run_id, queue="train",
        reason="Redis (the broker) was not reachable, so no worker was asked to train. Start Redis and resume.")


def baseline_skip_if_main_ended(*, run_id: int) -> bool:
    """A queued baseline whose main run failed or was cancelled is not trained (nothing to compare with):
    it is marked cancelled, saying why, and can be resumed with its main run."""
    main = TrainingRun.objects.filter(baseline_id=run_id).only("pk", "status").first()
    if main is None or main.status not in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
        return False
    return _baseline_cancel(baseline_id=run_id, main_id=main.pk,
                            ended="failed" if main.status == TrainingRun.Status.FAILED else "was cancelled")


def _baseline_cancel(*, baseline_id: int, main_id: int, ended: str) -> bool:
    return bool(TrainingRun.objects.filter(pk=baseline_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.CANCELLED, finished_at=timezone.now(),
        error=f"Not started: the run it is the baseline of (run {main_id}) {ended}. Resume that run, then this one."))


def run_claim(*, run_id: int, worker: str) -> bool:
    """Take a queued run for this worker. A second delivery of the same task finds it taken."""
    now = timezone.now()
    return bool(TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, worker=worker, started_at=now, heartbeat_at=now, error="",
        attempts=F("attempts") + 1, phase="starting",
    ))


def run_cancel(*, run: TrainingRun) -> TrainingRun | None:
    """A queued run stops at once; a running one at its next optimizer step. Its plain-DPO baseline, when it
    has not started, is cancelled with it (it is trained only to compare with this run) and returned."""
    now = timezone.now()
    with transaction.atomic():
        if not TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
                status=TrainingRun.Status.CANCELLED, finished_at=now, error="Cancelled before it started."):
            if not TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
                    cancel_requested=True):
                raise RunStateError(f"{run} is {run.get_status_display().lower()}: there is nothing to cancel.")
        if run.baseline_id and _baseline_cancel(baseline_id=run.baseline_id, main_id=run.pk, ended="was cancelled"):
            return TrainingRun.objects.get(pk=run.baseline_id)
    return None


def run_resume(*, run: TrainingRun) -> None:
    """Queue a failed or cancelled run again; it continues from its last checkpoint."""
    with transaction.atomic():
        updated = TrainingRun.objects.filter(pk=run.pk, status__in=TrainingRun.RESUMABLE).update(
            status=TrainingRun.Status.QUEUED, cancel_requested=False, error="", finished_at=None, phase="queued")
        if not updated:
            raise RunStateError(f"{run} is {run.get_status_display().lower()}: only failed or cancelled runs resume.")
        transaction.on_commit(lambda: run_enqueue(run_id=run.pk))


class NeedsConfirmation(RunStateError):
    """The action is allowed but probably a mistake; the message says why. Ask, then call again confirmed."""


def run_activate(*, run: TrainingRun, user, confirmed: bool = False) -> Activation:
    """Make a completed run the one chat uses. The previous activation stays as the rollback point. A version
    whose held-out accuracy is no better than chance, or whose personalization report finds a group served
    worse than by plain DPO, needs ``confirmed``; the question names every reason, one paragraph each."""
    if run.status != TrainingRun.Status.COMPLETED or not run.artifacts:
        raise RunStateError(f"{run} has not completed, so it has no model to serve.")
    if not confirmed:
        reasons = [note for note in (run.chance_note, served_worse_note(run)) if note]
        if reasons:
            raise NeedsConfirmation("\n\n".join(reasons + ["Activate it anyway?"]))
    return _activate(run, user)


def _activate(run: TrainingRun, user) -> Activation:
    """The activation row; on vLLM, the generate worker prepares the version (merged folder, server) at once."""
    activation = Activation.objects.create(run=run, activated_by=user)
    if settings.SERVING_BACKEND == "vllm":
        transaction.on_commit(lambda: _prepare_version(run.pk))
    try:
        pool_request(run=run)  # its newcomers' first questions, prepared now
    except PoolStateError:  # already being prepared
        pass
    return activation


def _prepare_version(run_id: int) -> None:
    try:
        dispatch.send(PREPARE_TASK, run_id, queue=settings.GENERATE_QUEUE)
    except dispatch.BrokerUnavailable:  # the first reply prepares it instead
        pass


def run_delete(*, run: TrainingRun) -> None:
    """Delete a run that is not training and was never served, with its logs and its folder of artifacts."""
    import shutil

    if run.is_active:
        raise RunStateError(f"{run} is {run.get_status_display().lower()}: cancel it before deleting it.")
    if Activation.objects.filter(run=run).exists():
        raise RunStateError(f"{run} has served chat as a version: it stays, so the history and a rollback to it "
                            "keep working.")
    folder = run_folder(run.pk)
    run.delete()
    shutil.rmtree(folder, ignore_errors=True)


def run_notes_save(*, run: TrainingRun, notes: str) -> None:
    if len(notes) > 10_000:
        raise RunStateError(f"Notes have at most 10,000 characters; these have {len(notes):,}.")
    TrainingRun.objects.filter(pk=run.pk).update(notes=notes.strip())


def run_rollback(*, user) -> Activation:
    """Re-activate the run that was active before the current one."""
    history = list(Activation.objects.select_related("run")[:2])
    if len(history) < 2:
        raise RunStateError("There is no earlier version to roll back to.")
    return _activate(history[1].run, user)


def runs_reap_stale(*, worker: str | None = None) -> int:
    """Mark running runs whose worker stopped sending heartbeats as failed, with the reason.

    Called by every worker's bookkeeping (every BOOKKEEPING_SECONDS) and by a train
    worker before it claims a run, so a killed worker's run is failed within the
    heartbeat timeout whoever looks; pages only read (they show a silent run as
    such). With ``worker``, when that worker (re)starts: every run it held, at once,
    since the process that trained them is gone.
    """
    timeout = settings.TRAIN_HEARTBEAT_TIMEOUT
    cutoff = timezone.now() - timedelta(seconds=timeout)
    stale = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING)
    stale = stale.filter(worker=worker) if worker is not None else stale.filter(heartbeat_at__lt=cutoff)
    reaped = 0
    for run in stale.only("pk", "worker", "step", "total_steps", "attempts"):
        if worker is not None:
            happened, why = f"The worker {worker} restarted while training this run", ""
        else:
            happened = f"The worker {run.worker or '?'} stopped sending heartbeats for over {timeout} s"
            why = " (killed, out of memory, or its machine went down)"
        reaped += stale.filter(pk=run.pk, attempts=run.attempts).update(
            status=TrainingRun.Status.FAILED, finished_at=timezone.now(), phase="",
            error=f"{happened} at step {run.step}/{run.total_steps}{why}. Press Resume to continue from the last "
                  "checkpoint.",
        )
    return reaped


def run_log_metrics(*, run_id: int, kind: str, step: int, values: dict) -> None:
    RunLog.objects.update_or_create(run_id=run_id, kind=kind, step=step, defaults={"values": values})
