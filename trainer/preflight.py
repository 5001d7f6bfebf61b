"""Before a run starts: will it fit in the memory of the train workers listening now, and if not, what
change makes it fit. Also the start form's defaults for those workers' device. Torch-free (the web uses it).

The estimate is ``trainer.core.memory`` (calibrated against measured peaks); what a worker has comes
from its device report (``trainer.devices``). A run must fit in ``FIT_SHARE`` of the biggest worker's
budget (a GPU's memory, or a CPU machine's RAM); the defaults for a CPU worker fit in half of it.
A run over N processes needs N of what the worker offers (GPUs, or CPU cores on a CPU worker); on a CPU
its N processes share the machine's RAM, on GPUs each has its own.
"""

from __future__ import annotations

from django.conf import settings

from trainer import devices
from trainer.core import memory
from trainer.core.config import TrainConfig
from trainer.core.fit import FIT_SHARE, Fit, fitting_change
from trainer.core.presets import preset_values

DEFAULTS_SHARE = 0.5  # the defaults for a CPU worker stay within half its memory


def model_shape() -> memory.ModelShape | None:
    from trainer.core import provision

    try:
        return memory.shape_of(provision.resolve(settings.BASE_MODEL, settings.DATA_DIR).path)
    except (provision.ProvisionError, FileNotFoundError, KeyError):
        return None


def train_workers() -> list[devices.DeviceReport]:
    try:
        return devices.reports("train")
    except Exception:  # Redis down: the status page says so; the form cannot check
        return []


def offered_processes(worker: devices.DeviceReport) -> int:
    """How many processes one run may use on this worker: one per GPU, or one per CPU core."""
    return worker.gpus if worker.device == "cuda" else worker.cpus


def check(config: dict, processes: int = 1) -> Fit:
    """Whether ``config`` over ``processes`` processes fits the listening train workers, and the change that
    would make it fit."""
    workers = train_workers()
    shape = model_shape()
    train_config = TrainConfig.from_dict(config)
    biggest = max(workers, key=lambda w: w.budget, default=None)
    kind = biggest.kind if biggest else None
    est = memory.estimate_config(shape, train_config, kind) if shape else None
    budget = biggest.budget if biggest else None
    on_gpu = any(w.device == "cuda" for w in workers)
    fit = Fit(est, budget, processes=processes, offered=max(map(offered_processes, workers), default=None),
              shared=not on_gpu)
    # The change is for the processes the run can have: as many as asked, or as many as a worker runs.
    usable = min(processes, fit.offered) if fit.too_many_processes else processes
    sharing = usable if fit.shared else 1
    if est is not None and budget is not None and est.peak * sharing > FIT_SHARE * budget:
        found = fitting_change(shape, train_config, FIT_SHARE * budget // sharing, on_gpu, usable, kind)
        if found:
            fit.change, fit.change_estimate = found
    if fit.too_many_processes:
        fit.change = {**(fit.change or {}), "processes": usable}
    return fit


def form_defaults(preset: str | None = None) -> dict:
    """Initial values of the start form: the cpu preset unless a train worker has a GPU (or ``preset``
    asks for the paper's), shrunk to half a CPU worker's memory when even that is too big."""
    workers = train_workers()
    on_gpu = any(w.device == "cuda" for w in workers)
    name = preset or ("paper" if on_gpu else "cpu")
    values = preset_values(name)
    shape = model_shape()
    cpu_budgets = [w.memory_total for w in workers if w.device == "cpu"]
    if name == "cpu" and shape and cpu_budgets:
        config = TrainConfig.from_dict(values)
        limit = DEFAULTS_SHARE * max(cpu_budgets)
        if memory.estimate_config(shape, config).peak > limit:
            found = fitting_change(shape, config, limit, on_gpu=False)
            if found:
                values.update(found[0])
    return values


def schedule_notes(config: dict, steps: int) -> list[str]:
    """What the run's bookkeeping settings will not do in a run of ``steps`` optimizer steps."""
    if not steps:
        return []
    notes = []
    every = int(config.get("checkpoint_every") or 0)
    if every and every >= steps:
        notes.append(f"Checkpoint every {every} steps: this run has {steps}, so it writes no checkpoint before it "
                     f"ends (a killed run would start again from step 0). Try {max(1, steps // 4)}.")
    every = int(config.get("diagnostics_every") or 0)
    if every and every > steps:
        notes.append(f"Gradient entanglement every {every} steps never comes in {steps} steps. "
                     f"Try {max(1, steps // 4)}.")
    warmup = int(config.get("warmup_steps") or 0)
    if warmup > steps // 10:
        notes.append(f"Warmup of {warmup} steps is cut to {steps // 10} (a tenth of the run).")
    return notes
