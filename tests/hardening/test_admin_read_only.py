"""The admin cannot rewrite what a run's worker wrote: only a run's name and notes are editable there."""

from django.contrib.auth import get_user_model
from django.urls import reverse

from trainer.models import RunLog, TrainingRun


def test_the_admin_changes_a_runs_name_and_notes_but_not_its_status_artifacts_or_launch(client, db):
    admin_user = get_user_model().objects.create_superuser("root", password="pw-long-enough-1")
    run = TrainingRun.objects.create(name="r", created_by=admin_user, status=TrainingRun.Status.FAILED,
                                     artifacts="/data/artifacts/run-1", launch_config="/etc/accelerate/two-gpus.yaml",
                                     config={"lr_lora": 1e-3}, error="worker died")
    client.force_login(admin_user)
    url = reverse("admin:trainer_trainingrun_change", args=[run.pk])
    page = client.get(url).content.decode()
    assert 'name="name"' in page and 'name="notes"' in page
    for field in ("status", "artifacts", "launch_config", "config", "error", "worker"):
        assert f'name="{field}"' not in page, field
    response = client.post(url, {"name": "renamed", "notes": "kept", "status": "completed",
                                 "artifacts": "/etc", "launch_config": "/tmp/evil.yaml", "error": ""})
    assert response.status_code == 302
    run.refresh_from_db()
    assert (run.name, run.notes) == ("renamed", "kept")
    assert (run.status, run.artifacts, run.launch_config, run.error) == (
        TrainingRun.Status.FAILED, "/data/artifacts/run-1", "/etc/accelerate/two-gpus.yaml", "worker died")
    assert client.get(reverse("admin:trainer_trainingrun_add")).status_code == 403
    assert client.get(reverse("admin:trainer_runlog_add")).status_code == 403
    assert RunLog.objects.count() == 0
