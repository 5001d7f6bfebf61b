"""Whether a run fits a memory budget, the change that makes it fit, and the words the start form refuses it with.

Torch-free and Django-free: the web's pre-flight (``trainer.preflight``) and the scale benchmark
(``python -m bench gpu``, on a machine without the web's packages) give the same answer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from trainer.core import memory
from trainer.core.config import TrainConfig

FIT_SHARE = 0.9  # a run may plan to use this much of a worker's memory; the rest is the OS and other work


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


def fitting_change(shape: memory.ModelShape, config: TrainConfig, budget: float, on_gpu: bool,
                   processes: int = 1, device_kind: str | None = None) -> tuple[dict, memory.MemoryEstimate] | None:
    """The smallest change that fits ``budget``: halve the micro-batch, then add gradient checkpointing
    (and bf16 on a GPU), micro-batches from the largest down (each process's share of the batch must be whole
    micro-batches). Estimated with ``device_kind``'s factors ("cpu" or None, or a GPU's name)."""
    share = config.batch_size // processes
    micros = [m for m in range(config.micro_batch_size, 0, -1) if share % m == 0]
    options = [{"micro_batch_size": m} for m in micros[1:]]
    options += [{"micro_batch_size": m, "gradient_checkpointing": True} for m in micros]
    if on_gpu and not config.bf16:
        options += [{**o, "bf16": True} for o in options]
    for change in options:
        candidate = dataclasses.replace(config, **change)
        est = memory.estimate_config(shape, candidate, device_kind)
        if est.peak <= budget:
            if change.get("micro_batch_size") == config.micro_batch_size:
                change = {k: v for k, v in change.items() if k != "micro_batch_size"}
            return change, est
    return None
