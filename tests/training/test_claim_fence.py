"""A worker writes only while it holds the run: a run failed by bookkeeping and resumed meanwhile is not
overwritten by the old attempt, and a heartbeat outlives a database error."""

import time

import pytest
from django.db import OperationalError
from django.utils import timezone

from tests.services import train_worker
from tests.training.test_train_worker import start, status_of, wait_for
from trainer import services
from trainer.models import RUN_LOG, TrainingRun, run_folder
from trainer.worker.record import Claim, ClaimLost, finish
from trainer.worker.training import Heartbeat

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.mark.slow
def test_a_run_failed_and_resumed_under_a_live_worker_is_trained_by_the_new_attempt_alone(
        staff, people, workdir, tiny_model_path):
    with train_worker(tiny_model_path, workdir, "train-fence@localhost"):
        run = start(staff, epochs=40)
        wait_for(lambda: (run.refresh_from_db() or run.step) >= 2, every=0.05)
        # What bookkeeping does to a run whose heartbeat it missed (a slow step, a database hiccup), and a
        # person pressing Resume at once: the old attempt is still training.
        TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.FAILED, error="no heartbeat",
                                                     finished_at=timezone.now())
        run.refresh_from_db()
        services.run_resume(run=run)
        wait_for(lambda: status_of(run) == TrainingRun.Status.COMPLETED, timeout=300)
    assert run.attempts == 2 and run.error == ""
    log = (run_folder(run.pk) / RUN_LOG).read_text()
    assert "attempt 1 by train-fence@localhost stopped: the run is no longer its own" in log
    assert log.index("stopped: the run is no longer its own") < log.index("(attempt 2,")


def test_writes_under_a_lost_claim_change_nothing(staff):
    run = TrainingRun.objects.create(name="r", created_by=staff, status=TrainingRun.Status.RUNNING,
                                     worker="train@a", attempts=1)
    claim = Claim.of(run.pk)
    claim.update(step=3)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.QUEUED)  # failed, then resumed
    with pytest.raises(ClaimLost):
        claim.update(step=4)
    assert not finish(run.pk, TrainingRun.Status.COMPLETED, claim=claim, artifacts="runs/1")
    run.refresh_from_db()
    assert (run.status, run.step, run.artifacts) == (TrainingRun.Status.QUEUED, 3, "")


class FlakyRows:
    """TrainingRun's manager, except that its first ``failures`` queries raise as a restarting database would."""

    def __init__(self, failures: int):
        self.failures = failures

    def filter(self, **kwargs):
        if self.failures:
            self.failures -= 1
            raise OperationalError("server closed the connection unexpectedly")
        return TrainingRun.objects.filter(**kwargs)


def test_the_heartbeat_outlives_database_errors(staff, settings):
    settings.TRAIN_HEARTBEAT_SECONDS = 1
    run = TrainingRun.objects.create(name="r", created_by=staff, status=TrainingRun.Status.RUNNING,
                                     worker="train@a", attempts=1, heartbeat_at=timezone.now())
    before = run.heartbeat_at

    class Flaky:
        Status = TrainingRun.Status
        objects = FlakyRows(failures=2)
        __name__ = "TrainingRun"

    with Heartbeat(run.pk, table=Flaky, fence={"worker": "train@a", "attempts": 1}):
        time.sleep(4.5)  # two beats fail, the next ones land
    run.refresh_from_db()
    assert Flaky.objects.failures == 0 and run.heartbeat_at > before
