"""Only staff start, watch, cancel, resume or activate runs."""

import pytest
from django.test import Client
from django.urls import reverse

from trainer.models import TrainingRun

PAGES = ["run_list", "run_new", "queue", "run_detail", "run_progress", "run_metrics", "personalization_progress"]
ACTIONS = ["run_cancel", "run_resume", "run_activate", "run_evaluate"]


@pytest.fixture
def run(staff):
    return TrainingRun.objects.create(name="r", created_by=staff, status=TrainingRun.Status.FAILED,
                                      config={"user_model": "individual"})


def url(name, run):
    if name in ("run_list", "run_new", "queue"):
        return reverse(name)
    return reverse(name, args=[run.pk])


@pytest.mark.parametrize("name", PAGES)
def test_anonymous_and_participants_cannot_see_training_pages(client, owner, run, name, test_redis):
    assert client.get(url(name, run)).status_code == 302
    client.force_login(owner)
    response = client.get(url(name, run))
    assert response.status_code == 403 and "for the study's staff" in response.content.decode()


@pytest.mark.parametrize("name", PAGES)
def test_staff_see_training_pages(client, staff, run, name, test_redis):
    client.force_login(staff)
    assert client.get(url(name, run)).status_code == 200


@pytest.mark.parametrize("name", ACTIONS)
def test_actions_refuse_get(client, staff, run, name):
    client.force_login(staff)
    assert client.get(reverse(name, args=[run.pk])).status_code == 405


@pytest.mark.parametrize("name", ACTIONS + ["version_rollback"])
def test_a_participant_cannot_act_on_runs(client, owner, run, name):
    client.force_login(owner)
    target = reverse(name) if name == "version_rollback" else reverse(name, args=[run.pk])
    assert client.post(target).status_code == 403
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED


def test_starting_a_run_needs_csrf(staff):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff)
    assert strict.post(reverse("run_new"), {"algorithm": "p-dpo"}).status_code == 403
    assert not TrainingRun.objects.exists()


def test_a_participant_cannot_start_a_run(client, owner):
    client.force_login(owner)
    client.post(reverse("run_new"), {"algorithm": "p-dpo"})
    assert not TrainingRun.objects.exists()


def test_resume_by_staff_requeues_a_failed_run(client, staff, run, test_redis):
    client.force_login(staff)
    assert client.post(reverse("run_resume", args=[run.pk])).status_code == 302
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.QUEUED


def test_activating_an_unfinished_run_is_refused_with_a_reason(client, staff, run):
    client.force_login(staff)
    response = client.post(reverse("run_activate", args=[run.pk]), follow=True)
    assert "has not completed" in response.content.decode()
    assert not run.activations.exists()


def test_only_staff_cancel_an_evaluation_and_never_by_get(client, owner, staff, run):
    from trainer.models import PersonalEvaluation

    evaluation = PersonalEvaluation.objects.create(run=run)
    target = reverse("evaluation_cancel", args=[evaluation.pk])
    client.force_login(owner)
    assert client.post(target).status_code == 403
    client.force_login(staff)
    assert client.get(target).status_code == 405
    evaluation.refresh_from_db()
    assert evaluation.status == PersonalEvaluation.Status.QUEUED
    client.post(target)
    evaluation.refresh_from_db()
    assert evaluation.status == PersonalEvaluation.Status.CANCELLED
