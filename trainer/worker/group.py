"""A run over several processes: the train worker launches the loop with ``accelerate launch`` as a child
process group and watches it.

The processes (``trainer.worker.child``) report through the database as a
one-process run does; the worker keeps the run's heartbeat while the group
lives, backs a cancel up by stopping the group when it has not stopped by
itself within ``CANCEL_GRACE_SECONDS``, and writes the reason when the group
ends without finishing the run (a process killed, out of memory, a bad
launch). The group dies with the worker (``PR_SET_PDEATHSIG``, armed by ``die_with_parent.py`` before it
execs the launcher), so a killed worker leaves no orphans training behind the reaper's back.

Torch-free on purpose: the worker's own process never initialises CUDA; the
children own the GPUs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from trainer import devices
from trainer.core.ports import free_port
from trainer.models import GROUP_LOG, TrainingRun, run_folder
from trainer.worker.record import append_to_run_log, finish, phase

log = logging.getLogger(__name__)

CANCEL_GRACE_SECONDS = 60  # the processes stop by themselves between micro-batches; this is the backstop
# What the loop runs: DDP over torch.distributed. DeepSpeed and FSDP would need the loop to shard its state.
SUPPORTED_LAUNCHES = {"MULTI_GPU", "MULTI_CPU", "NO"}


class LaunchError(ValueError):
    """The run cannot be launched on this worker as asked; the message says what to change."""


def train_in_group(run: TrainingRun, claim=None) -> str:
    folder = run_folder(run.pk)
    folder.mkdir(parents=True, exist_ok=True)
    command = launch_command(run, offered=devices_offered())
    env = group_environment(run.processes, claim)
    out = folder / GROUP_LOG
    with out.open("ab") as sink:
        sink.write(f"\n=== attempt {run.attempts} at {timezone.now():%Y-%m-%d %H:%M:%S} UTC: "
                   f"{' '.join(command)}\n".encode())
        sink.flush()
        phase(run.pk, f"starting {run.processes} processes", claim)
        proc = subprocess.Popen(dying_with_this_process(command), cwd=settings.BASE_DIR, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        forced = _watch(run.pk, proc)
    append_to_run_log(run.pk, f"the {run.processes} processes ended (exit code {proc.returncode})")
    run.refresh_from_db()
    if run.status != TrainingRun.Status.RUNNING:  # process 0 finished it: completed, cancelled or its failure
        return run.status
    checkpoint = _last_checkpoint(folder / "checkpoints")
    if forced:
        finish(run.pk, TrainingRun.Status.CANCELLED, only_running=True, claim=claim,
               error=f"Cancelled: the {run.processes} processes did not stop by themselves within "
                     f"{CANCEL_GRACE_SECONDS} s, so they were stopped. Resume continues from {checkpoint}.")
        return TrainingRun.Status.CANCELLED
    reason = failure_reason(out.read_bytes()[-200_000:].decode(errors="replace"), proc.returncode)
    finish(run.pk, TrainingRun.Status.FAILED, only_running=True, claim=claim,
           error=f"{reason} Press Resume to continue from {checkpoint}.")
    return TrainingRun.Status.FAILED


def devices_offered() -> tuple[str, int]:
    """(device, how many processes this machine runs a run on): its GPUs, else its CPU cores."""
    report = devices.report_of_this_machine("", [])
    return (report.device, report.gpus) if report.device == "cuda" else (report.device, report.cpus)


def launch_command(run: TrainingRun, *, offered: tuple[str, int]) -> list[str]:
    """``accelerate launch`` for ``run``; refuses what this worker cannot do, saying what to change."""
    device, most = offered
    if run.processes > most:
        what = "GPUs" if device == "cuda" else "CPU cores (it has no GPU)"
        raise LaunchError(f"The run asks for {run.processes} processes, but this worker ({socket.gethostname()}) "
                          f"has {most} {what}. Resume it on a bigger worker, or start a new run with at most "
                          f"{most}.")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(run.processes),
               "--num_machines", "1", "--main_process_port", str(free_port()), "--dynamo_backend", "no",
               "--mixed_precision", "no"]  # precision is the run's own setting (autocast in the loop)
    if run.launch_config:
        command += ["--config_file", str(_checked_config(Path(run.launch_config)))]
    else:
        command += ["--multi_gpu"]  # torchrun's launcher: DDP over NCCL on GPUs, gloo on CPUs
    return command + ["-m", "trainer.worker.child", str(run.pk)]


def _checked_config(path: Path) -> Path:
    if not path.is_file():
        raise LaunchError(f"The accelerate config file {path} does not exist on this worker "
                          f"({socket.gethostname()}). Write it there with `accelerate config --config_file {path}`, "
                          "or start the run without one (plain DDP).")
    try:
        text = path.read_text(encoding="utf-8")
        values = json.loads(text) if path.suffix == ".json" else _yaml(text)
    except (OSError, ValueError) as exc:
        raise LaunchError(f"The accelerate config file {path} could not be read: {exc}") from exc
    kind = str((values or {}).get("distributed_type", "NO")).upper()
    if kind not in SUPPORTED_LAUNCHES:
        raise LaunchError(f"The accelerate config file {path} asks for {kind}; the training loop runs DDP "
                          f"(distributed_type MULTI_GPU or MULTI_CPU). DeepSpeed and FSDP are not supported yet.")
    return path


def _yaml(text: str) -> dict:
    import yaml  # accelerate's own dependency

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc).splitlines()[0]) from exc


def group_environment(processes: int, claim=None) -> dict:
    """The children's environment: the worker's (settings, BASE_MODEL), this checkout importable, on a CPU
    the cores shared out between the processes, and the worker's claim (process 0 fences its writes on it)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(settings.BASE_DIR),
                                                                     os.environ.get("PYTHONPATH")])),
               DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "alignment_site.settings"),
               PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    if claim is not None:
        env.update(RUN_CLAIM_WORKER=claim.worker, RUN_CLAIM_ATTEMPT=str(claim.attempt))
    return env


def _watch(run_id: int, proc: subprocess.Popen) -> bool:
    """Wait for the group; True when it had to be stopped after a cancel it did not honour in time."""
    asked = None
    while True:
        try:
            proc.wait(timeout=1.0)
            return False
        except subprocess.TimeoutExpired:
            pass
        if asked is None and TrainingRun.objects.filter(pk=run_id, cancel_requested=True).exists():
            asked = time.monotonic()
        if asked is not None and time.monotonic() - asked > CANCEL_GRACE_SECONDS:
            stop_group(proc)
            return True


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the whole group (the launcher passes it on), SIGKILL to what is left after ``grace``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


DIE_WITH_PARENT = Path(__file__).with_name("die_with_parent.py")


def dying_with_this_process(command: list[str]) -> list[str]:
    """``command`` started through ``die_with_parent.py``: the kernel sends it SIGTERM when this process dies
    (no ``preexec_fn``, which is unsafe in a threaded worker)."""
    return [sys.executable, str(DIE_WITH_PARENT), str(os.getpid()), *command]


def _last_checkpoint(folder: Path) -> str:
    from trainer.core.checkpoint import latest_checkpoint

    found = latest_checkpoint(folder)
    return f"its last checkpoint ({found.name})" if found is not None else "step 0 (no checkpoint was written)"


_FAILED = re.compile(r"^\s*rank\s*:\s*(\d+).*?^\s*exitcode\s*:\s*(-?\d+)", re.S | re.M)


def failure_reason(output: str, returncode: int | None) -> str:
    """The group's exit in plain words: which process failed first and how, and the last error line.
    ``output`` is the group's log; only its last attempt counts."""
    output = output.rsplit("\n=== attempt ", 1)[-1]
    summary = output.rsplit("Root Cause", 1)[-1] if "Root Cause" in output else output
    found = _FAILED.search(summary)
    code = int(found.group(2)) if found else returncode
    if code is not None and code < 0 and -code in signal.valid_signals():  # killed: the others' errors are its echo
        who = f"Training process {found.group(1)}" if found else "The launcher of the training processes"
        text = f"{who} was killed by {signal.Signals(-code).name}"
        return text + (" (out of memory, or stopped by hand)." if code == -signal.SIGKILL else ".")
    text = (f"Training process {found.group(1)} exited with code {code}" if found
            else f"The training processes ended with exit code {returncode}")
    errors = [line.strip() for line in output.splitlines()
              if re.match(r"^\s*[A-Za-z_.]*(Error|Exception)\b.*:", line) and "ChildFailedError" not in line]
    return text + (f": {errors[-1][:300]}" if errors else ".")
