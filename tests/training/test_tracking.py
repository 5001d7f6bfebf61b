"""A run asked to report to TensorBoard, MLflow and trackio: a real train worker writes every logged step to
each, and what each tracker's own reader gives back is what the dashboard stored; the personalization
evaluation, when it ends, adds its win-rates per group to the same tracker runs; a run that asks for no
tracker writes nothing."""

import json
import os
import subprocess
import sys

import pytest

from tests.services import train_worker
from tests.training.test_personal_evaluation import DATA, FAST, here  # noqa: F401 (a fixture)
from tests.training.test_train_worker import start, status_of, wait_for
from trainer import services
from trainer.core.tracking import parse_report_to
from trainer.models import PersonalEvaluation, RunLog, TrainingRun
from trainer.personalization.report import personalization_report, tracked_win_rates

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

KEYS = ("loss", "rewards/accuracies", "rewards/margins")
QUICK = {**FAST, "eval_max_new_tokens": 6}  # the evaluation writes with the run's own budget: keep it short


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


@pytest.fixture
def tracking(settings, tmp_path):
    """An empty tracking folder (TRACKING_DIR), set before any run trains."""
    settings.TRACKING_DIR = tmp_path / "tracking"
    return settings.TRACKING_DIR


def test_the_personalization_evaluation_adds_its_win_rates_per_group_to_the_runs_trackers_when_it_ends(
        tracking, people, staff, here):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainer.worker import personalization, training

    run = services.run_create(created_by=staff, name="p", config={**QUICK, "report_to": "tensorboard,mlflow"},
                              data_filter=DATA, with_baseline=True, check_fit=False)
    for pk in (run.pk, run.baseline_id):  # the second to finish starts the evaluation
        assert training.execute(pk) == TrainingRun.Status.COMPLETED
    assert personalization.execute(PersonalEvaluation.objects.get().pk) == PersonalEvaluation.Status.COMPLETED
    run.refresh_from_db()
    groups = {g["name"]: g["vs"]["baseline"] for g in personalization_report(run)["groups"]}
    assert set(groups) == {"A", "B"} and all(vs["n"] for vs in groups.values())
    name = f"run-{run.pk}"

    board = EventAccumulator(str(tracking / "tensorboard" / name))
    board.Reload()
    assert len(board.Scalars("train/loss")) == run.total_steps  # the training's own, in the same run
    for group, vs in groups.items():
        for suffix, key in (("", "rate"), ("_low", "low"), ("_high", "high")):
            [event] = board.Scalars(f"eval/personalization/{group}/win_rate_vs_plain{suffix}")
            assert (event.step, event.value) == (run.step, pytest.approx(vs[key]))
        assert [e.value for e in board.Scalars(f"eval/personalization/{group}/n_vs_plain")] == [vs["n"]]

    mlflow = MlflowClient(f"sqlite:///{tracking / 'mlflow.db'}")
    [found] = mlflow.search_runs([mlflow.get_experiment_by_name("personal-alignment").experiment_id],
                                 filter_string=f"tags.`mlflow.runName` = '{name}'")  # one run, gone on with
    assert found.info.status == "FINISHED" and found.data.params["lr_lora"] == str(run.config["lr_lora"])
    assert found.data.metrics["eval/accuracy"] == pytest.approx(run.evaluation["accuracy"])
    for group, vs in groups.items():
        assert found.data.metrics[f"eval/personalization/{group}/win_rate_vs_plain"] == pytest.approx(vs["rate"])
        assert found.data.metrics[f"eval/personalization/{group}/win_rate_vs_plain_high"] == pytest.approx(
            vs["high"])


def test_a_run_that_asks_for_no_tracker_writes_nothing_to_the_tracking_folder(tracking, people, staff, here):
    from trainer.personalization.services import evaluation_start
    from trainer.worker import personalization, training

    run = services.run_create(created_by=staff, name="p", config=QUICK, data_filter=DATA, with_baseline=False,
                              check_fit=False)
    assert run.config["report_to"] == "" and training.execute(run.pk) == TrainingRun.Status.COMPLETED
    run.refresh_from_db()
    evaluation = evaluation_start(run=run, created_by=staff)  # by hand: no baseline to wait for
    assert personalization.execute(evaluation.pk) == PersonalEvaluation.Status.COMPLETED
    assert not tracking.exists()


def test_the_tracked_win_rates_are_named_per_group_and_opponent_and_leave_out_what_was_not_judged():
    rate = {"rate": 0.25, "low": 0.1, "high": 0.45, "n": 20, "wins": 4, "ties": 2, "losses": 14}
    none = {"rate": None, "low": None, "high": None, "n": 0, "wins": 0, "ties": 0, "losses": 0}
    report = {"groups": [{"name": "(no answer)", "people": 3, "vs": {"baseline": rate, "generic": none,
                                                                     "base": none}},
                         {"name": "18-24 years / UK", "people": 1, "vs": {"baseline": none, "generic": none,
                                                                          "base": {**rate, "n": 2}}}]}
    assert tracked_win_rates(report) == {
        "eval/personalization/no_answer/people": 3,
        "eval/personalization/no_answer/win_rate_vs_plain": 0.25,
        "eval/personalization/no_answer/win_rate_vs_plain_low": 0.1,
        "eval/personalization/no_answer/win_rate_vs_plain_high": 0.45,
        "eval/personalization/no_answer/n_vs_plain": 20,
        "eval/personalization/18-24_years_UK/people": 1,
        "eval/personalization/18-24_years_UK/win_rate_vs_base": 0.25,
        "eval/personalization/18-24_years_UK/win_rate_vs_base_low": 0.1,
        "eval/personalization/18-24_years_UK/win_rate_vs_base_high": 0.45,
        "eval/personalization/18-24_years_UK/n_vs_base": 2,
    }


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
