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
    gpu_name: str = ""  # nvidia-smi's name of the first GPU ("" without): the memory estimate's kind of device

    @property
    def budget(self) -> int:
        """Bytes one training process may use: a GPU's memory, or all the machine's RAM."""
        return self.gpu_memory if self.device == "cuda" else self.memory_total

    @property
    def kind(self) -> str:
        """The kind of device the memory estimate is fitted per: "cpu" or the GPU's name."""
        return (self.gpu_name or "cpu") if self.device == "cuda" else "cpu"


def _meminfo() -> dict[str, int]:
    values = {}
    try:
        for line in open("/proc/meminfo", encoding="ascii"):
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024
    except OSError:  # not Linux: nothing to report
        pass
    return values


def _gpus() -> list[tuple[int, int, str]]:
    """(total, free bytes, name) per visible GPU, from nvidia-smi; empty when there is none."""
    if not shutil.which("nvidia-smi") or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.total,memory.free,name",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    wanted = set(visible.split(",")) if visible else None
    rows = []
    for line in out.strip().splitlines():
        index, total, free, name = (x.strip() for x in line.split(",", 3))
        if wanted is None or index in wanted:
            rows.append((int(total) * 1024 ** 2, int(free) * 1024 ** 2, name))
    return rows


def report_of_this_machine(worker: str, queues: list[str]) -> DeviceReport:
    mem, gpus = _meminfo(), _gpus()
    return DeviceReport(worker=worker, queues=sorted(queues), device="cuda" if gpus else "cpu", gpus=len(gpus),
                        gpu_memory=min((t for t, _, _ in gpus), default=0),
                        gpu_free=min((f for _, f, _ in gpus), default=0),
                        memory_total=mem.get("MemTotal", 0), memory_available=mem.get("MemAvailable", 0),
                        cpus=os.cpu_count() or 1, gpu_name=gpus[0][2] if gpus else "")


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
            fields = json.loads(raw)
            report = DeviceReport(**{k: v for k, v in fields.items() if k in DeviceReport.__dataclass_fields__})
            if queue is None or queue in report.queues:
                found.append(report)
    return found
