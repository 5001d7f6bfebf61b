"""Every staff URL of the URL table, posted by a participant with the data staff would send, each target in a state
where the action would succeed (a running run to cancel, a failed one to resume, a completed one to activate or
delete), is refused and changes nothing; the same post by staff does change something, so each case can fail."""

import pytest
from django.utils import timezone

from tests.hardening.test_get_writes_nothing import patterns, snapshot
from trainer.models import PersonalEvaluation, TrainingRun

pytestmark = pytest.mark.django_db

# What staff would post to each action; a URL not named here gets the empty form.
POSTED = {"run_cancel": {"confirm": "yes"}, "run_delete": {"confirm": "yes"}, "run_activate": {"confirm": "yes"},
          "run_notes": {"notes": "changed"}, "evaluation_cancel": {}, "version_rollback": {}}
# The run each run action needs to succeed.
TARGET = {"run_cancel": "running", "run_resume": "failed", "run_activate": "completed", "run_delete": "completed",
          "run_notes": "completed", "run_evaluate": "completed", "run_download_prepare": "completed"}


@pytest.fixture
def targets(staff, settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path
    now = timezone.now()
    runs = {status: TrainingRun.objects.create(name=status, created_by=staff, status=status, started_at=now,
                                               heartbeat_at=now, artifacts="runs/x/model" if status == "completed"
                                               else "", config={"user_model": "individual"})
            for status in ("running", "failed", "completed")}
    evaluation = PersonalEvaluation.objects.create(run=runs["completed"], created_by=staff,
                                                   status=TrainingRun.Status.RUNNING, started_at=now, heartbeat_at=now)
    return runs, evaluation


def test_every_staff_action_refuses_a_participant_and_changes_nothing(client, owner, staff, targets, test_redis):
    runs, evaluation = targets
    actions = [p for p in patterns() if str(p.pattern).startswith("staff/") and p.name in {*POSTED, *TARGET}]
    assert {p.name for p in actions} == {*POSTED, *TARGET}  # every action named above is in the URL table
    for pattern in actions:
        path = "/" + str(pattern.pattern).replace("<int:run_id>", str(runs[TARGET.get(pattern.name,
                                                                                      "completed")].pk))
        path = path.replace("<int:evaluation_id>", str(evaluation.pk))
        client.force_login(owner)
        before = snapshot()
        refused = client.post(path, POSTED.get(pattern.name, {}))
        assert refused.status_code == 403, (path, refused.status_code)
        assert snapshot() == before, f"a participant's POST {path} changed the database"


def test_the_same_posts_by_staff_do_act(client, staff, targets, test_redis):
    runs, evaluation = targets
    client.force_login(staff)
    before = snapshot()
    client.post(f"/staff/runs/{runs['running'].pk}/cancel/", POSTED["run_cancel"])
    assert TrainingRun.objects.get(pk=runs["running"].pk).cancel_requested
    client.post(f"/staff/runs/{runs['failed'].pk}/resume/")
    assert TrainingRun.objects.get(pk=runs["failed"].pk).status == TrainingRun.Status.QUEUED
    client.post(f"/staff/runs/{runs['completed'].pk}/activate/", POSTED["run_activate"])
    assert runs["completed"].activations.exists()
    client.post(f"/staff/runs/{runs['completed'].pk}/notes/", POSTED["run_notes"])
    assert TrainingRun.objects.get(pk=runs["completed"].pk).notes == "changed"
    client.post(f"/staff/evaluations/{evaluation.pk}/cancel/")
    assert PersonalEvaluation.objects.get(pk=evaluation.pk).cancel_requested
    assert snapshot() != before
