"""The machine a run or a benchmark runs on: the line each benchmark prints first (figures from different
processors are not comparable), and whether this CPU computes bf16 natively."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags to go by
        return ""


def cpu_has_native_bf16() -> bool:
    """Does this CPU compute bf16 natively (AVX512-BF16 or AMX)? Without it bf16 autocast is emulated:
    several times slower than fp32 (an AVX2-only EPYC took over 100 s per bf16 step, 36 s in fp32)."""
    return "avx512_bf16" in _cpuinfo() or "amx_bf16" in _cpuinfo()


def describe_cpu() -> str:
    """One line for benchmark headers: figures from different CPUs are not comparable."""
    name = next((ln.split(":", 1)[1].strip() for ln in _cpuinfo().splitlines() if ln.startswith("model name")),
                "CPU")
    return (f"{name}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads, "
            f"{'native' if cpu_has_native_bf16() else 'no native'} bf16")


def describe_device(device: str | torch.device = "cpu") -> str:
    """The benchmark header line for the device that runs it: the GPU's name, or ``describe_cpu``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return describe_cpu()


def precision_for(choice: str, device: str | torch.device = "cpu") -> str:
    """A benchmark's --precision: "auto" is bf16 on a GPU and where the CPU has it natively, else fp32."""
    if choice != "auto":
        return choice
    return "bf16" if torch.device(device).type == "cuda" or cpu_has_native_bf16() else "fp32"
