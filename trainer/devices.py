"""What each worker machine has (device, GPUs, memory), reported by the workers through Redis.

A worker publishes its report at start and with every bookkeeping round; a report
lives three rounds, so a stopped worker's report disappears by itself. The report
is read from ``nvidia-smi`` and ``/proc/meminfo``, never from torch: querying CUDA
would initialise it in the worker's own process, which the children of a
multi-process run need to themselves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass

from django.conf import settings

from alignment_site.redis_client import client

KEY = "workers:device:"


@dataclass(frozen=True)
class DeviceReport:
    worker: str
    queues: list[str]
    device: str  # "cuda" or "cpu"
    gpus: int
    gpu_memory: int  # bytes per GPU (the smallest), 0 without GPUs
    gpu_free: int  # bytes free on the fullest GPU, 0 without GPUs
    memory_total: int  # bytes of RAM
    memory_available: int
    cpus: int

    @property
    def budget(self) -> int:
        """Bytes one training process may use: a GPU's memory, or all the machine's RAM."""
        return self.gpu_memory if self.device == "cuda" else self.memory_total


def _meminfo() -> dict[str, int]:
    values = {}
    try:
        for line in open("/proc/meminfo", encoding="ascii"):
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024
    except OSError:  # not Linux: nothing to report
        pass
    return values


def _gpus() -> list[tuple[int, int]]:
    """(total, free) bytes per visible GPU, from nvidia-smi; empty when there is none."""
    if not shutil.which("nvidia-smi") or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.total,memory.free",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    wanted = set(visible.split(",")) if visible else None
    rows = []
    for line in out.strip().splitlines():
        index, total, free = (x.strip() for x in line.split(","))
        if wanted is None or index in wanted:
            rows.append((int(total) * 1024 ** 2, int(free) * 1024 ** 2))
    return rows


def report_of_this_machine(worker: str, queues: list[str]) -> DeviceReport:
    mem, gpus = _meminfo(), _gpus()
    return DeviceReport(worker=worker, queues=sorted(queues), device="cuda" if gpus else "cpu", gpus=len(gpus),
                        gpu_memory=min((t for t, _ in gpus), default=0), gpu_free=min((f for _, f in gpus), default=0),
                        memory_total=mem.get("MemTotal", 0), memory_available=mem.get("MemAvailable", 0),
                        cpus=os.cpu_count() or 1)


def report_publish(report: DeviceReport) -> None:
    client().set(KEY + report.worker, json.dumps(asdict(report)), ex=3 * settings.BOOKKEEPING_SECONDS)


def report_withdraw(worker: str) -> None:
    client().delete(KEY + worker)


def reports(queue: str | None = "train") -> list[DeviceReport]:
    """The live reports of the workers listening on ``queue`` (every worker with None)."""
    conn = client()
    found = []
    for key in sorted(conn.scan_iter(match=KEY + "*", count=100)):
        raw = conn.get(key)
        if raw:
            report = DeviceReport(**json.loads(raw))
            if queue is None or queue in report.queues:
                found.append(report)
    return found
