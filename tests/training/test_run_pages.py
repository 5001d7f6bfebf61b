"""A run's page while it waits and trains: the time it was created and how long it has been waiting or running
(in the panel the page polls), bars that say what they count, the totals that are known, a cancel that asks
first and names the baseline it cancels too, and "version" only for what can serve chat."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from alignment_site import glossary
from tests.factories import population
from trainer import services
from trainer.models import TrainingRun

pytestmark = pytest.mark.django_db

SMALL = {"user_model": "individual", "batch_size": 2, "micro_batch_size": 1, "epochs": 2, "max_prompt_length": 64,
         "max_length": 160}


def make_run(staff, **fields):
    return TrainingRun.objects.create(name=fields.pop("name", "r"), created_by=staff,
                                      config={"user_model": "individual", "batch_size": 4}, **fields)


def started(staff, **fields) -> TrainingRun:
    """A run (with its plain-DPO baseline) as the start form makes it, on six people's ratings."""
    population(people=6, conversations=3)
    return services.run_create(created_by=staff, name=fields.pop("name", "tea"), config=SMALL,
                               data_filter={"min_pairs": 1, "unseen_fraction": 0.2, "test_fraction": 0.34},
                               with_baseline=fields.pop("with_baseline", True), check_fit=False)


def labelled_bars(page: str) -> dict[str, str]:
    """Each <progress> on the page by id, with the text of the <label> that names it."""
    labels = dict(re.findall(r'<label for="([\w-]+)"[^>]*>([^<]*)</label>', page))
    return {bar: " ".join(labels.get(bar, "").split()) for bar in re.findall(r'<progress id="([\w-]+)"', page)}


def test_the_run_page_shows_when_it_was_created_and_the_polled_panel_how_long_it_has_waited(client, staff):
    run = make_run(staff)
    TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(seconds=40))
    client.force_login(staff)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    created = TrainingRun.objects.get(pk=run.pk).created_at
    assert f'<time datetime="{timezone.localtime(created).isoformat()}" id="created-at">' in page
    assert " ago" not in page.split('id="progress"')[0]  # no relative time the polling leaves behind
    panel = client.get(reverse("run_progress", args=[run.pk])).content.decode()
    assert 'id="elapsed">queued for 40 s</span>' in panel
    TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=12))
    panel = client.get(reverse("run_progress", args=[run.pk])).content.decode()
    assert 'id="elapsed">queued for 12 min</span>' in panel  # the next poll moves it on
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING,
                                                 started_at=timezone.now() - timedelta(minutes=3))
    panel = client.get(reverse("run_progress", args=[run.pk])).content.decode()
    assert 'id="elapsed">running for 3 min</span>' in panel


def test_each_progress_bar_has_a_label_that_says_what_it_counts(client, staff):
    run = make_run(staff, status=TrainingRun.Status.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now(),
                   step=2, total_steps=12, phase="training: 25 of 72 micro-batches", phase_name="training",
                   phase_done=25, phase_total=72)
    client.force_login(staff)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert labelled_bars(page) == {"step-progress": "Optimizer steps: 2 of 12",
                                   "phase-progress": "Micro-batches: 25 of 72"}
    assert '<progress id="step-progress" max="12" value="2">' in page
    TrainingRun.objects.filter(pk=run.pk).update(phase="tokenising: 10 of 268", phase_name="tokenising",
                                                 phase_done=10, phase_total=268)
    page = client.get(reverse("run_progress", args=[run.pk])).content.decode()
    assert labelled_bars(page)["phase-progress"] == "Tokenising: 10 of 268"


def test_a_run_counting_micro_batches_before_its_first_step_shows_its_total_steps(client, staff):
    run = started(staff, with_baseline=False)
    assert run.total_steps > 0  # known from the start form's data and settings
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING, started_at=timezone.now(),
                                                 heartbeat_at=timezone.now(), phase="training: 1 of 8 micro-batches",
                                                 phase_name="training", phase_done=1, phase_total=8)
    client.force_login(staff)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert f'step <strong id="step">0</strong> of <span id="total-steps">{run.total_steps}</span>' in page
    assert "?" not in page.split('id="progress"')[1].split("</div>")[0]
    assert labelled_bars(page)["phase-progress"] == "Micro-batches: 1 of 8"
    legacy = make_run(staff, status=TrainingRun.Status.RUNNING, started_at=timezone.now(),
                      heartbeat_at=timezone.now(), phase="loading the model")
    page = client.get(reverse("run_detail", args=[legacy.pk])).content.decode()
    assert 'step <strong id="step">0</strong>\n' in page and "of ?" not in page


def test_cancel_asks_first_and_names_the_baseline_it_cancels_too(client, staff):
    run = started(staff)
    baseline = run.baseline
    client.force_login(staff)
    asked = client.post(reverse("run_cancel", args=[run.pk]))
    text = asked.content.decode()
    assert asked.status_code == 200 and f"Cancel {run}?" in text
    link = f'<a href="{reverse("run_detail", args=[baseline.pk])}">{baseline}</a>'
    assert f'id="cancel-baseline">Its plain-DPO baseline, {link}, is waiting in the queue and is cancelled too' in text
    assert 'name="confirm" value="yes"' in text and "Cancel both runs" in text
    run.refresh_from_db(), baseline.refresh_from_db()
    assert run.status == baseline.status == TrainingRun.Status.QUEUED  # asking changed nothing

    done = client.post(reverse("run_cancel", args=[run.pk]), {"confirm": "yes"}, follow=True).content.decode()
    run.refresh_from_db(), baseline.refresh_from_db()
    assert run.status == baseline.status == TrainingRun.Status.CANCELLED
    assert f"Its plain-DPO baseline, {baseline}, is cancelled too." in done
    assert f"the run it is the baseline of (run {run.pk}) was cancelled" in baseline.error


def test_cancelling_a_running_run_leaves_a_baseline_that_is_training_alone_and_says_so(client, staff):
    run = started(staff)
    baseline = run.baseline
    TrainingRun.objects.filter(pk__in=[run.pk, baseline.pk]).update(status=TrainingRun.Status.RUNNING,
                                                                    started_at=timezone.now())
    client.force_login(staff)
    text = client.post(reverse("run_cancel", args=[run.pk])).content.decode()
    assert "is running and is left as it is" in text and "Cancel this run" in text
    client.post(reverse("run_cancel", args=[run.pk]), {"confirm": "yes"})
    run.refresh_from_db(), baseline.refresh_from_db()
    assert run.cancel_requested and not baseline.cancel_requested
    assert baseline.status == TrainingRun.Status.RUNNING


def test_the_run_page_s_cancel_button_leads_to_the_question_and_cancels_nothing_by_itself(client, staff):
    run = make_run(staff)
    client.force_login(staff)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    form = re.search(rf'<form method="post" action="{reverse("run_cancel", args=[run.pk])}">(.*?)</form>', page,
                     re.S).group(1)
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    answer = client.post(reverse("run_cancel", args=[run.pk]), fields)  # what pressing it sends
    assert answer.status_code == 200 and "Cancel this run" in answer.content.decode()
    assert TrainingRun.objects.get(pk=run.pk).status == TrainingRun.Status.QUEUED


@pytest.mark.parametrize("status", [TrainingRun.Status.CANCELLED, TrainingRun.Status.FAILED,
                                    TrainingRun.Status.QUEUED])
def test_a_run_that_never_completed_is_not_called_a_version(client, staff, status):
    run = make_run(staff, status=status)
    completed = make_run(staff, status=TrainingRun.Status.COMPLETED, artifacts="runs/1/model")
    client.force_login(staff)
    assert glossary.version(run) not in client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert glossary.version(completed) in client.get(reverse("run_detail", args=[completed.pk])).content.decode()
