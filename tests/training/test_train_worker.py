"""Fault tests with a real Celery `train` worker and the tiny model: a killed
worker, a resume, a duplicate delivery, a cancel, a NaN loss, and a clean run."""

import json
import signal
import time

import pytest

from alignment_site import dispatch
from tests.services import train_worker
from trainer import services
from trainer.models import RunLog, TrainingRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST = {"user_model": "individual", "batch_size": 4, "micro_batch_size": 4, "n_user_tokens": 2,
        "lr_lora": 1e-3, "lr_user": 1e-2, "warmup_steps": 0, "log_every": 1, "max_prompt_length": 64,
        "max_length": 160, "diagnostics_every": 0}
DATA = {"min_pairs": 1, "unseen_fraction": 0.2, "test_fraction": 0.34}


def start(staff, **config) -> TrainingRun:
    return services.run_create(created_by=staff, name="t", config={**FAST, **config}, data_filter=DATA,
                               with_baseline=False)


def wait_for(predicate, timeout=120.0, every=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def status_of(run) -> str:
    run.refresh_from_db()
    return run.status


def test_a_run_trains_evaluates_and_publishes_its_model(staff, people, workdir, tiny_model_path):
    from trainer import devices

    with train_worker(tiny_model_path, workdir, "train-ok@localhost"):
        run = start(staff, epochs=2, diagnostics_every=3, diagnostics_pairs=2)
        wait_for(lambda: status_of(run) in (TrainingRun.Status.COMPLETED, TrainingRun.Status.FAILED))
        # The worker told the web what it has, for the start form's memory check.
        report = wait_for(lambda: next((r for r in devices.reports("train") if r.worker == "train-ok@localhost"),
                                       None), timeout=30)
        assert report.queues == ["train"] and report.memory_total > 0
    assert run.status == TrainingRun.Status.COMPLETED, run.error
    assert run.step == run.total_steps > 0
    assert RunLog.objects.filter(run=run, kind="train").count() == run.total_steps
    logged = RunLog.objects.filter(run=run, kind="eval").get().values
    assert logged == {k: pytest.approx(v) for k, v in run.evaluation["metrics"].items()}  # the curve's end point
    per_user = run.evaluation["per_user"]  # the overall accuracy is the pairs' accuracy, person by person
    assert run.evaluation["accuracy"] == pytest.approx(sum(u["n"] * u["accuracy"] for u in per_user)
                                                       / sum(u["n"] for u in per_user))
    assert {"user_id", "seen", "n", "accuracy"} <= set(run.evaluation["per_user"][0])
    assert run.evaluation["unseen"]["n"] > 0  # held-out people, scored with the generic vectors
    assert set(run.evaluation["groups"]) <= {"A", "B"} and run.evaluation["groups"]
    assert len(run.user_map) == run.data_summary["seen_users"] + 1  # every seen user and the generic one
    assert run.diagnostics and "entanglement/share_chosen_down" in run.diagnostics[0]
    live = RunLog.objects.filter(run=run, kind="diag").order_by("step")  # logged as they were computed
    assert [row.step for row in live] == [d["step"] for d in run.diagnostics]
    model = workdir / "artifacts" / run.artifacts
    assert (model / "adapter" / "adapter_config.json").is_file() and (model / "user_model.safetensors").is_file()
    assert not [p for p in model.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    split = json.loads((model.parent / "split.json").read_text())  # what a resume and each evaluation apply
    assert len(split["seen_users"]) == run.data_summary["seen_users"] and split["test_unseen"]


def test_a_killed_worker_leaves_a_failed_run_that_resumes_from_its_checkpoint(staff, people, workdir,
                                                                             tiny_model_path):
    with train_worker(tiny_model_path, workdir, "train-victim@localhost") as proc:
        run = start(staff, epochs=16, checkpoint_every=5)
        wait_for(lambda: (run.refresh_from_db() or run.step) >= 12, every=0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = run.step
    # Nobody is training any more: within the heartbeat timeout someone looking at the runs marks it failed.
    wait_for(lambda: services.runs_reap_stale() or status_of(run) == TrainingRun.Status.FAILED, timeout=30)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "stopped sending heartbeats" in run.error and "Resume" in run.error
    run_dir = workdir / "artifacts" / "runs" / str(run.pk)
    assert not (run_dir / "model").exists() and run.artifacts == ""  # no half-written model is active

    services.run_resume(run=run)
    with train_worker(tiny_model_path, workdir, "train-rescue@localhost"):
        wait_for(lambda: status_of(run) in (TrainingRun.Status.COMPLETED, TrainingRun.Status.FAILED), timeout=300)
    assert run.status == TrainingRun.Status.COMPLETED, run.error
    assert run.attempts == 2
    resumed_step = int(run.data_summary["resumed_from"].split("-")[-1])
    assert 5 <= resumed_step <= killed_at and resumed_step % 5 == 0
    assert run.data_summary["first_step_this_attempt"] == resumed_step + 1


def test_a_restarted_worker_fails_the_run_its_killed_process_held_at_once(staff, people, workdir,
                                                                          tiny_model_path):
    with train_worker(tiny_model_path, workdir, "train-restart@localhost") as proc:
        run = start(staff, epochs=16)
        wait_for(lambda: (run.refresh_from_db() or run.step) >= 2, every=0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The new process of the same worker knows the old one is gone: no need to wait for the heartbeat timeout
    # (90 s in the worker), nobody in this process reaps.
    with train_worker(tiny_model_path, workdir, "train-restart@localhost"):
        wait_for(lambda: status_of(run) == TrainingRun.Status.FAILED, timeout=30)
    assert "train-restart@localhost restarted while training this run at step" in run.error
    assert "Press Resume" in run.error


def test_the_same_task_delivered_twice_trains_once(staff, people, workdir, tiny_model_path):
    with train_worker(tiny_model_path, workdir, "train-dup@localhost"):
        run = start(staff)
        dispatch.send(services.TRAIN_TASK, run.pk, queue="train")  # a second delivery of the same run
        wait_for(lambda: status_of(run) == TrainingRun.Status.COMPLETED)
        log = workdir / "train-dup.log"  # the worker says how each delivery ended: wait for both
        wait_for(lambda: log.read_text().count("Task trainer.train_run[") >= 4, timeout=60)  # 2 received, 2 ended
    run.refresh_from_db()
    assert run.attempts == 1 and run.status == TrainingRun.Status.COMPLETED
    assert "succeeded" in log.read_text() and "'skipped'" in log.read_text()  # the second did nothing


def test_cancel_stops_within_one_step_keeps_a_checkpoint_and_resume_finishes_from_it(staff, people, workdir,
                                                                                      tiny_model_path):
    with train_worker(tiny_model_path, workdir, "train-cancel@localhost"):
        run = start(staff, epochs=30)
        wait_for(lambda: (run.refresh_from_db() or run.step) >= 3, every=0.05)
        services.run_cancel(run=run)
        requested_at = TrainingRun.objects.get(pk=run.pk).step
        wait_for(lambda: status_of(run) == TrainingRun.Status.CANCELLED)
        assert run.step <= requested_at + 1
        assert run.step < run.total_steps
        cancelled_at = run.step
        checkpoints = list((workdir / "artifacts" / "runs" / str(run.pk) / "checkpoints").iterdir())
        assert checkpoints, "a cancelled run keeps a checkpoint to resume from"

        services.run_resume(run=run)  # the same worker takes it up again
        wait_for(lambda: status_of(run) in (TrainingRun.Status.COMPLETED, TrainingRun.Status.FAILED), timeout=300)
    assert run.status == TrainingRun.Status.COMPLETED, run.error
    assert run.attempts == 2 and run.data_summary["resumed_from"] == f"step-{cancelled_at:07d}"
    assert run.data_summary["first_step_this_attempt"] == cancelled_at + 1
    steps = list(RunLog.objects.filter(run=run, kind="train").order_by("step").values_list("step", flat=True))
    assert steps == list(range(1, run.total_steps + 1))  # no step lost or done twice across the two attempts


def test_a_nan_loss_stops_the_run_with_that_reason(staff, people, workdir, tiny_model_path):
    with train_worker(tiny_model_path, workdir, "train-nan@localhost"):
        run = start(staff, epochs=10, lr_lora=1e30, lr_user=1e30, max_grad_norm=1e30)
        wait_for(lambda: status_of(run) in (TrainingRun.Status.FAILED, TrainingRun.Status.COMPLETED))
    assert run.status == TrainingRun.Status.FAILED
    assert "NaN or infinite" in run.error and "Lower the learning rates" in run.error


def test_a_train_worker_busy_with_a_run_is_shown_as_busy_not_missing(client, staff, people, workdir,
                                                                      tiny_model_path):
    client.force_login(staff)
    with train_worker(tiny_model_path, workdir, "train-busy@localhost"):
        run = start(staff, epochs=40)
        wait_for(lambda: (run.refresh_from_db() or run.step) >= 2, every=0.05)
        queue_page = client.get("/staff/queue/").content.decode()
        status_page = client.get("/staff/status/").content.decode()
        services.run_cancel(run=run)
        wait_for(lambda: status_of(run) == TrainingRun.Status.CANCELLED, timeout=60)
    assert "No worker listens on the" not in queue_page
    # One name for the worker on both pages and on the run: the one Celery knows it by (its -n).
    busy = f"train-busy@localhost (busy with run {run.pk})"
    assert run.worker == "train-busy@localhost"
    assert busy in queue_page and busy in status_page and "on train-busy@localhost" in queue_page
    assert "step 0/0" not in queue_page


def test_cancel_inside_the_first_step_of_the_bundled_model_stops_before_that_step_ends(staff, people, workdir,
                                                                             bundled_model_path):
    """The first step's micro-batches each run their reference pass first: a cancel there, on the real model
    where a step takes many seconds, is honoured at the next micro-batch, not when the step ends."""
    with train_worker(bundled_model_path, workdir, "train-refcancel@localhost"):
        run = start(staff, batch_size=8, micro_batch_size=1, max_length=256, max_prompt_length=128,
                    n_user_tokens=4, epochs=4)
        # The phase line is written at most every 2 s, so wait for "training:" (any micro-batch of step 1).
        wait_for(lambda: (run.refresh_from_db() or run.phase).startswith("training:") and run.step == 0,
                 timeout=240, every=0.05)
        services.run_cancel(run=run)
        wait_for(lambda: status_of(run) in (TrainingRun.Status.CANCELLED, TrainingRun.Status.FAILED), timeout=120)
    assert run.status == TrainingRun.Status.CANCELLED, run.error
    assert run.step == 0, f"stopped at step {run.step}: the cancel waited for the step to end"
