"""A run asked to report to TensorBoard, MLflow and trackio: a real train worker writes every logged step to
each, and what each tracker's own reader gives back is what the dashboard stored."""

import json
import os
import subprocess
import sys

import pytest

from tests.services import train_worker
from tests.training.test_train_worker import start, status_of, wait_for
from trainer.core.tracking import parse_report_to
from trainer.models import RunLog, TrainingRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

KEYS = ("loss", "rewards/accuracies", "rewards/margins")


def test_a_run_reports_every_step_to_tensorboard_mlflow_and_trackio(staff, people, workdir, tiny_model_path):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracking = workdir / "tracking"
    with train_worker(tiny_model_path, workdir, "train-tracking@localhost", TRACKING_DIR=str(tracking)):
        run = start(staff, epochs=2, report_to="tensorboard,mlflow,trackio")
        wait_for(lambda: status_of(run) in (TrainingRun.Status.COMPLETED, TrainingRun.Status.FAILED), timeout=300)
    assert run.status == TrainingRun.Status.COMPLETED, run.error
    stored = {row.step: row.values for row in RunLog.objects.filter(run=run, kind="train")}
    assert sorted(stored) == list(range(1, run.total_steps + 1))
    expected = {key: [(step, stored[step][key]) for step in sorted(stored)] for key in KEYS}
    name = f"run-{run.pk}"

    board = EventAccumulator(str(tracking / "tensorboard" / name))
    board.Reload()
    for key in KEYS:
        assert [(e.step, pytest.approx(e.value, rel=1e-5)) for e in board.Scalars(f"train/{key}")] == expected[key]
    assert board.Scalars("eval/rewards/accuracies")[0].value == pytest.approx(
        RunLog.objects.get(run=run, kind="eval").values["eval/rewards/accuracies"], rel=1e-5)

    mlflow = MlflowClient(f"sqlite:///{tracking / 'mlflow.db'}")
    [found] = mlflow.search_runs([mlflow.get_experiment_by_name("personal-alignment").experiment_id],
                                 filter_string=f"tags.`mlflow.runName` = '{name}'")
    for key in KEYS:
        history = sorted((m.step, m.value) for m in mlflow.get_metric_history(found.info.run_id, f"train/{key}"))
        assert history == [(s, pytest.approx(v)) for s, v in expected[key]]
    assert found.data.params["lr_lora"] == str(run.config["lr_lora"]) and found.info.status == "FINISHED"
    assert found.data.metrics["eval/accuracy"] == pytest.approx(run.evaluation["accuracy"])

    read = ("import json, trackio; print(json.dumps(trackio.SQLiteStorage.get_logs("
            f"'personal-alignment', '{name}')))")
    logs = json.loads(subprocess.run([sys.executable, "-c", read], env={**os.environ, "TRACKIO_DIR": str(
        tracking / "trackio")}, capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()[-1])
    for key in KEYS:
        assert [(row["step"], row[f"train/{key}"]) for row in logs if f"train/{key}" in row] == [
            (s, pytest.approx(v)) for s, v in expected[key]]


def test_report_to_names_only_known_trackers():
    assert parse_report_to("mlflow, tensorboard,mlflow") == ["mlflow", "tensorboard"]
    assert parse_report_to("none") == parse_report_to("") == []
    with pytest.raises(ValueError, match="unknown tracker 'wandb'; choose from tensorboard, mlflow, trackio"):
        parse_report_to("wandb")


def test_the_start_form_takes_its_trackers_from_report_to_and_puts_them_in_the_run_settings(settings, db):
    from tests.training.test_run_services import FORM_DEFAULTS
    from trainer.forms import RunForm

    settings.REPORT_TO = "tensorboard"
    assert RunForm().fields["report_to"].initial == ["tensorboard"]
    data = {k: v for k, v in FORM_DEFAULTS.items() if v is not False} | {"report_to": ["mlflow", "trackio"]}
    form = RunForm(data=data)
    assert form.is_valid(), form.errors
    assert form.config()["report_to"] == "mlflow,trackio"
    assert not RunForm(data={**data, "report_to": ["wandb"]}).is_valid()
    run = TrainingRun(name="r", config={**form.config()}, data_filter=form.data_filter())
    assert RunForm.initial_from(run)["report_to"] == ["mlflow", "trackio"]
