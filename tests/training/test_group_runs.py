"""A run over two CPU processes (DDP over gloo under `accelerate launch`), started from the dashboard and trained
by a real Celery `train` worker: the same metrics and accuracy as one process, a cancel that stops both, a killed
process that fails the run with its reason and a resume that finishes it, and the launches a worker refuses."""

import os
import signal
from pathlib import Path

import pytest
from django.urls import reverse

from tests.services import train_worker
from tests.training.test_run_services import FORM_DEFAULTS
from tests.training.test_train_worker import DATA, FAST, status_of, wait_for
from trainer import services
from trainer.models import RunLog, TrainingRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ENDED = (TrainingRun.Status.COMPLETED, TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED)
# No dropout: one and two processes draw different masks. Micro-batches of 2: each process takes 2 of every 4.
SAME = {**FAST, "micro_batch_size": 2, "lora_dropout": 0.0, "seed": 7}


@pytest.fixture
def workdir(tmp_path, settings):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.TRAIN_HEARTBEAT_TIMEOUT = 20
    return tmp_path


def children(run_id: int) -> dict[int, int]:
    """rank -> pid of the live training processes of ``run_id`` (read from /proc)."""
    return {int(env[b"RANK"]): pid for pid, argv, env in _processes(run_id)
            if b"trainer.worker.child" in argv and b"RANK" in env}


def launcher(run_id: int) -> int | None:
    """The pid of the live `accelerate launch` of ``run_id``."""
    return next((pid for pid, argv, env in _processes(run_id)
                 if b"accelerate.commands.launch" in argv and b"RANK" not in env), None)


def _processes(run_id: int):
    """(pid, argv, environment) of each live process whose command line names ``run_id``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            env = dict(line.split(b"=", 1) for line in (entry / "environ").read_bytes().split(b"\0") if b"=" in line)
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if str(run_id).encode() in argv and state != "Z":
            yield int(entry.name), argv, env


def start_from_the_form(client, staff, processes: int, **config) -> TrainingRun:
    form = {**FORM_DEFAULTS, **{k: v for k, v in {**SAME, **config}.items() if k in FORM_DEFAULTS},
            "algorithm": "p-dpo", "with_baseline": "", "processes": processes, "min_pairs": DATA["min_pairs"],
            "unseen_fraction": DATA["unseen_fraction"], "test_fraction": DATA["test_fraction"], "name": f"x{processes}"}
    client.force_login(staff)
    response = client.post(reverse("run_new"), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    return TrainingRun.objects.get(name=f"x{processes}")


def start(staff, processes: int = 2, **config) -> TrainingRun:
    return services.run_create(created_by=staff, name="g", config={**SAME, **config}, data_filter=DATA,
                               with_baseline=False, processes=processes, check_fit=False)


def test_two_processes_from_the_dashboard_train_like_one(client, staff, people, workdir, tiny_model_path):
    with train_worker(tiny_model_path, workdir, "train-group@localhost"):
        one = start_from_the_form(client, staff, 1, epochs=2)
        two = start_from_the_form(client, staff, 2, epochs=2)
        for run in (one, two):
            wait_for(lambda run=run: status_of(run) in ENDED, timeout=300)
    assert (one.status, two.status) == (TrainingRun.Status.COMPLETED,) * 2, (one.error, two.error)
    assert (one.processes, two.processes, two.data_summary["processes"]) == (1, 2, 2)
    curves = [list(RunLog.objects.filter(run=r, kind="train").order_by("step").values_list("step", "values"))
              for r in (one, two)]
    assert [s for s, _ in curves[0]] == [s for s, _ in curves[1]] == list(range(1, one.total_steps + 1))
    for (_, a), (_, b) in zip(*curves):
        assert set(a) == set(b)  # the same metrics, logged at the same steps
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3, abs=1e-4)
    assert set(two.evaluation) == set(one.evaluation)
    assert two.evaluation["accuracy"] == pytest.approx(one.evaluation["accuracy"], abs=0.05)
    assert (workdir / "artifacts" / two.artifacts / "adapter" / "adapter_config.json").is_file()
    assert len(two.user_map) == len(one.user_map) > 0
    log = (workdir / "artifacts" / "runs" / str(two.pk) / "processes.log").read_text()
    assert "accelerate.commands.launch --num_processes 2" in log and "process 1 done" in log


def test_cancel_stops_both_processes(staff, people, workdir, tiny_model_path):
    with train_worker(tiny_model_path, workdir, "train-group-cancel@localhost"):
        run = start(staff, epochs=200)
        wait_for(lambda: (run.refresh_from_db() or run.step) >= 2 and len(children(run.pk)) == 2, timeout=180)
        services.run_cancel(run=run)
        wait_for(lambda: status_of(run) in ENDED, timeout=30)
        wait_for(lambda: not children(run.pk), timeout=15)
    assert run.status == TrainingRun.Status.CANCELLED and run.step < run.total_steps
    assert list((workdir / "artifacts" / "runs" / str(run.pk) / "checkpoints").iterdir())


def test_a_killed_process_fails_the_run_with_the_reason_and_resume_finishes_it(staff, people, workdir,
                                                                               tiny_model_path):
    with train_worker(tiny_model_path, workdir, "train-group-kill@localhost"):
        run = start(staff, epochs=24, checkpoint_every=3)
        wait_for(lambda: (run.refresh_from_db() or run.step) >= 7 and 1 in children(run.pk), timeout=180)
        os.kill(children(run.pk)[1], signal.SIGKILL)
        wait_for(lambda: status_of(run) in ENDED, timeout=60)
        assert run.status == TrainingRun.Status.FAILED
        assert "Training process 1 was killed by SIGKILL" in run.error, run.error
        assert "Press Resume to continue from its last checkpoint (step-" in run.error
        wait_for(lambda: not children(run.pk), timeout=15)
        assert run.artifacts == ""
        killed_at = run.step

        services.run_resume(run=run)
        wait_for(lambda: status_of(run) in ENDED, timeout=300)
    assert run.status == TrainingRun.Status.COMPLETED, run.error
    resumed = int(run.data_summary["resumed_from"].split("-")[-1])
    assert 3 <= resumed <= killed_at and resumed % 3 == 0 and run.attempts == 2
    assert run.step == run.total_steps
    per_user = run.evaluation["per_user"]  # evaluated by process 0 on every held-out pair
    assert run.evaluation["n"] == sum(u["n"] for u in per_user) > 0
    assert run.evaluation["accuracy"] == pytest.approx(sum(u["n"] * u["accuracy"] for u in per_user)
                                                       / run.evaluation["n"])


def test_a_worker_refuses_more_processes_than_it_has_and_a_missing_config_file(staff, people, workdir,
                                                                               tiny_model_path):
    with train_worker(tiny_model_path, workdir, "train-group-bad@localhost"):
        too_many = start(staff, processes=4, batch_size=8)
        missing = services.run_create(created_by=staff, name="m", config=SAME, data_filter=DATA,
                                      with_baseline=False, processes=2, launch_config="/nowhere/ds_zero3.yaml",
                                      check_fit=False)
        for run in (too_many, missing):
            wait_for(lambda run=run: status_of(run) in ENDED, timeout=60)
    assert too_many.status == missing.status == TrainingRun.Status.FAILED
    assert "asks for 4 processes, but this worker" in too_many.error and "CPU cores" in too_many.error
    assert "/nowhere/ds_zero3.yaml does not exist on this worker" in missing.error
    assert "accelerate config --config_file" in missing.error


def test_a_killed_worker_takes_its_processes_with_it(staff, people, workdir, tiny_model_path):
    with train_worker(tiny_model_path, workdir, "train-group-dies@localhost") as worker:
        run = start(staff, epochs=200)
        wait_for(lambda: len(children(run.pk)) == 2, timeout=180)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    wait_for(lambda: not children(run.pk), timeout=30)  # no orphans training behind the reaper's back


def test_a_launcher_killed_outright_takes_its_processes_with_it_and_fails_the_run(staff, people, workdir,
                                                                                  tiny_model_path):
    with train_worker(tiny_model_path, workdir, "train-launcher-dies@localhost"):
        run = start(staff, epochs=200)
        wait_for(lambda: len(children(run.pk)) == 2, timeout=180)
        os.kill(launcher(run.pk), signal.SIGKILL)  # it cannot pass this on: each process has its own signal armed
        wait_for(lambda: not children(run.pk), timeout=30)
        wait_for(lambda: status_of(run) in ENDED, timeout=60)
    assert run.status == TrainingRun.Status.FAILED, run.error
    assert run.error.startswith("The launcher of the training processes was killed by SIGKILL"), run.error


def test_the_reason_names_the_process_that_failed_first_and_its_error():
    from trainer.worker.group import failure_reason

    log = ("\n=== attempt 1 ...\nTraceback (most recent call last):\nValueError: The selected data has no preference "
           "pairs: collect ratings first.\nRuntimeError: Connection closed by peer\nRoot Cause (first observed "
           "failure):\n[0]:\n  rank      : 1 (local_rank: 1)\n  exitcode  : -9 (pid: 8)\n")
    assert failure_reason(log, 1) == "Training process 1 was killed by SIGKILL (out of memory, or stopped by hand)."
    assert failure_reason("W1206 Sending process 7 closing signal SIGTERM\n", -15) == (
        "The launcher of the training processes was killed by SIGTERM.")
    own = log.replace("exitcode  : -9", "exitcode  : 1").replace("RuntimeError: Connection closed by peer\n", "")
    assert failure_reason(own, 1) == ("Training process 1 exited with code 1: ValueError: The selected data has no "
                                      "preference pairs: collect ratings first.")
