"""A real `train` worker whose database stops answering for a few seconds in the middle of a run (every
connection dropped, new ones closed at once, as when PostgreSQL restarts): the run goes on and ends completed
by its first attempt, with every step's progress and metrics written."""

import time

import pytest
from django.db import connection

from tests.outage import Outage
from tests.services import _database_url, train_worker
from tests.training.test_train_worker import start, status_of, wait_for
from trainer.models import RunLog, TrainingRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

OUTAGE_SECONDS = 6


def test_a_run_rides_out_the_database_going_away_for_a_few_seconds(staff, people, workdir, tiny_model_path):
    if connection.vendor != "postgresql":
        pytest.skip("the outage is a relay in front of PostgreSQL (./test.sh runs the suite on it)")
    with Outage(_database_url(connection.settings_dict)) as outage:
        with train_worker(tiny_model_path, workdir, "train-outage@localhost", DATABASE_URL=outage.url):
            run = start(staff, epochs=24, checkpoint_every=50)
            wait_for(lambda: (run.refresh_from_db() or run.step) >= 3, every=0.05)
            outage.cut()
            step_at_cut = TrainingRun.objects.get(pk=run.pk).step
            time.sleep(OUTAGE_SECONDS)
            during = TrainingRun.objects.get(pk=run.pk)
            outage.restore()
            wait_for(lambda: status_of(run) in (TrainingRun.Status.COMPLETED, TrainingRun.Status.FAILED),
                     timeout=300)
        log = (workdir / "train-outage.log").read_text()
    assert outage.cuts > 0 and "the database did not answer" in log
    assert during.step <= step_at_cut + 1 and during.status == TrainingRun.Status.RUNNING  # it really was cut off
    assert run.status == TrainingRun.Status.COMPLETED, run.error
    assert run.attempts == 1 and run.step == run.total_steps > step_at_cut + 1
    steps = list(RunLog.objects.filter(run=run, kind="train").order_by("step").values_list("step", flat=True))
    assert steps == list(range(1, run.total_steps + 1))  # no step's metrics lost in the outage
