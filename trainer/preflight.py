"""Before a run starts: will it fit in the memory of the train workers listening now, and if not, what
change makes it fit. Also the start form's defaults for those workers' device. Torch-free (the web uses it).

The estimate is ``trainer.core.memory`` (calibrated against measured peaks); what a worker has comes
from its device report (``trainer.devices``). A run must fit in ``FIT_SHARE`` of the biggest worker's
budget (a GPU's memory, or a CPU machine's RAM); the defaults for a CPU worker fit in half of it.
A run over N processes needs N of what the worker offers (GPUs, or CPU cores on a CPU worker); on a CPU
its N processes share the machine's RAM, on GPUs each has its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from django.conf import settings

from trainer import devices
from trainer.core import memory
from trainer.core.config import TrainConfig
from trainer.core.presets import preset_values

FIT_SHARE = 0.9  # a run may plan to use this much of a worker's memory; the rest is the OS and other work
DEFAULTS_SHARE = 0.5  # the defaults for a CPU worker stay within half its memory


@dataclass
class Fit:
    estimate: memory.MemoryEstimate | None  # None: the model's shape is unknown here (a hub id)
    budget: int | None  # bytes of the biggest listening train worker; None: no worker reports
    change: dict | None = None  # settings that make it fit, when it does not
    change_estimate: memory.MemoryEstimate | None = None
    processes: int = 1
    offered: int | None = None  # the most processes a listening train worker runs; None: no worker reports
    shared: bool = False  # the processes share the budget (a CPU worker's RAM) rather than a GPU each

    @property
    def too_many_processes(self) -> bool:
        return self.offered is not None and self.processes > self.offered

    @property
    def memory_fits(self) -> bool:
        return self.estimate is None or self.budget is None or self.need <= FIT_SHARE * self.budget

    @property
    def need(self) -> int:
        """Bytes the run needs from one budget: its processes' peaks where they share it, else one."""
        return self.estimate.peak * self.sharing

    @property
    def fits(self) -> bool:
        return self.memory_fits and not self.too_many_processes

    @property
    def sharing(self) -> int:
        return self.processes if self.shared else 1

    def refusal(self) -> str:
        """The plain-words reason a run that does not fit is refused."""
        parts = []
        if self.too_many_processes:
            parts.append(f"This run asks for {self.processes} processes, but the biggest train worker listening "
                         f"now runs at most {self.offered} (one per GPU, or one per CPU core on a CPU worker). Ask "
                         f"for {self.offered}, or start a worker with more GPUs.")
        if not self.memory_fits:
            need, have = self.need / memory.GIB, self.budget / memory.GIB
            each = f"{self.processes} processes of " if self.sharing > 1 else ""
            parts.append(f"This run needs about {need:.1f} GiB at its peak ({each}{self.estimate.describe()}), more "
                         f"than the {FIT_SHARE:.0%} of {have:.0f} GiB the biggest train worker has.")
            memory_change = {k: v for k, v in (self.change or {}).items() if k != "processes"}
            if memory_change:
                sharing = self.change.get("processes", self.processes) if self.shared else 1
                parts.append(f"{describe_change(self.change)} brings it to about "
                             f"{self.change_estimate.peak * sharing / memory.GIB:.1f} GiB.")
            else:
                parts.append("No micro-batch, gradient checkpointing or precision makes it fit: the model alone "
                             f"needs {(self.estimate.base + self.estimate.weights) / memory.GIB:.1f} GiB. Use a "
                             "smaller model or a worker with more memory.")
        return " ".join(parts)


def describe_change(change: dict) -> str:
    parts = []
    if "processes" in change:
        parts.append(f"{change['processes']} processes")
    if "micro_batch_size" in change:
        parts.append(f"micro-batches of {change['micro_batch_size']} (the same effective batch, accumulated)")
    if change.get("gradient_checkpointing"):
        parts.append("gradient checkpointing")
    if change.get("bf16"):
        parts.append("bf16")
    return "Training with " + " and ".join(parts)


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


def fitting_change(shape: memory.ModelShape, config: TrainConfig, budget: float, on_gpu: bool,
                   processes: int = 1) -> tuple[dict, memory.MemoryEstimate] | None:
    """The smallest change that fits ``budget``: halve the micro-batch, then add gradient checkpointing
    (and bf16 on a GPU), micro-batches from the largest down (each process's share of the batch must be whole
    micro-batches)."""
    share = config.batch_size // processes
    micros = [m for m in range(config.micro_batch_size, 0, -1) if share % m == 0]
    options = [{"micro_batch_size": m} for m in micros[1:]]
    options += [{"micro_batch_size": m, "gradient_checkpointing": True} for m in micros]
    if on_gpu and not config.bf16:
        options += [{**o, "bf16": True} for o in options]
    for change in options:
        candidate = dataclasses.replace(config, **change)
        est = memory.estimate_config(shape, candidate)
        if est.peak <= budget:
            if change.get("micro_batch_size") == config.micro_batch_size:
                change = {k: v for k, v in change.items() if k != "micro_batch_size"}
            return change, est
    return None


def offered_processes(worker: devices.DeviceReport) -> int:
    """How many processes one run may use on this worker: one per GPU, or one per CPU core."""
    return worker.gpus if worker.device == "cuda" else worker.cpus


def check(config: dict, processes: int = 1) -> Fit:
    """Whether ``config`` over ``processes`` processes fits the listening train workers, and the change that
    would make it fit."""
    workers = train_workers()
    shape = model_shape()
    train_config = TrainConfig.from_dict(config)
    est = memory.estimate_config(shape, train_config) if shape else None
    budget = max((w.budget for w in workers), default=None)
    on_gpu = any(w.device == "cuda" for w in workers)
    fit = Fit(est, budget, processes=processes, offered=max(map(offered_processes, workers), default=None),
              shared=not on_gpu)
    # The change is for the processes the run can have: as many as asked, or as many as a worker runs.
    usable = min(processes, fit.offered) if fit.too_many_processes else processes
    sharing = usable if fit.shared else 1
    if est is not None and budget is not None and est.peak * sharing > FIT_SHARE * budget:
        found = fitting_change(shape, train_config, FIT_SHARE * budget // sharing, on_gpu, usable)
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
