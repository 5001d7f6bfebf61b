from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import population
from trainer import selectors, services
from trainer.forms import RunForm
from trainer.models import Activation, RunLog, TrainingRun

FORM_DEFAULTS = {name: field.initial for name, field in RunForm.base_fields.items() if field.initial is not None}


def make_run(staff, **fields):
    return TrainingRun.objects.create(name=fields.pop("name", "r"), created_by=staff,
                                      config={"user_model": "individual", "batch_size": 4}, **fields)


def test_the_preview_counts_people_pairs_and_steps(db):
    population(people=6, conversations=3)  # one pair per conversation
    preview = services.run_preview(data_filter={"min_pairs": 1, "unseen_fraction": 0.0, "test_fraction": 0.0},
                                   config={"batch_size": 4, "micro_batch_size": 4, "epochs": 2})
    assert (preview["users"], preview["pairs"], preview["train_pairs"], preview["steps"]) == (6, 18, 18, 9)
    assert preview["estimated_seconds"] > 0 and not preview["rate_measured"]


def test_the_preview_keeps_only_people_with_enough_pairs(db):
    users = population(people=3, conversations=2)
    from tests.factories import rated_conversations

    rated_conversations(users[0], n=3)
    assert selectors.pair_counts({"min_pairs": 4}) == {users[0].pk: 5}


def test_the_start_page_shows_what_the_run_will_be(client, staff):
    population(people=4, conversations=2)
    client.force_login(staff)
    response = client.get(reverse("run_preview"), {**FORM_DEFAULTS, "batch_size": 2, "micro_batch_size": 2,
                                                   "unseen_fraction": 0, "test_fraction": 0})
    page = response.content.decode()
    assert "<strong>8</strong> pairs from <strong>4</strong> people" in page
    assert "<strong>4</strong> optimizer steps" in page


def test_a_bad_combination_is_refused_on_the_form(client, staff):
    client.force_login(staff)
    response = client.post(reverse("run_new"), {**FORM_DEFAULTS, "batch_size": 10, "micro_batch_size": 4})
    assert response.status_code == 200
    assert "whole multiple of the micro-batch size" in response.content.decode()
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_starting_with_a_baseline_queues_both_runs_after_commit(client, staff, test_redis):
    from trainer import devices

    for key in test_redis.scan_iter(match=devices.KEY + "*"):  # no worker listens: nothing to check memory against
        test_redis.delete(key)
    client.force_login(staff)
    response = client.post(reverse("run_new"), {**FORM_DEFAULTS, "name": "first", "with_baseline": "on"})
    run = TrainingRun.objects.get(name="first")
    assert response.status_code == 302 and response["Location"] == reverse("run_detail", args=[run.pk])
    assert run.config["user_model"] == "individual" and run.config["beta"] == 0.5
    assert run.baseline.config["user_model"] == "none" and run.baseline.config["alpha"] == 0.0
    assert {run.status, run.baseline.status} == {TrainingRun.Status.QUEUED}


def test_a_run_is_claimed_once(staff):
    run = make_run(staff)
    assert services.run_claim(run_id=run.pk, worker="w1")
    assert not services.run_claim(run_id=run.pk, worker="w2")
    run.refresh_from_db()
    assert (run.status, run.worker, run.attempts) == (TrainingRun.Status.RUNNING, "w1", 1)


def test_cancelling_a_queued_run_stops_it_at_once_and_a_running_one_at_its_next_step(staff):
    queued, running = make_run(staff), make_run(staff, status=TrainingRun.Status.RUNNING)
    services.run_cancel(run=queued)
    services.run_cancel(run=running)
    queued.refresh_from_db(), running.refresh_from_db()
    assert queued.status == TrainingRun.Status.CANCELLED
    assert (running.status, running.cancel_requested) == (TrainingRun.Status.RUNNING, True)
    with pytest.raises(services.RunStateError, match="nothing to cancel"):
        services.run_cancel(run=queued)


def test_only_failed_or_cancelled_runs_resume(staff):
    with pytest.raises(services.RunStateError, match="only failed or cancelled runs resume"):
        services.run_resume(run=make_run(staff, status=TrainingRun.Status.COMPLETED))


def test_a_silent_worker_gets_its_run_failed_with_a_reason(staff, settings):
    settings.TRAIN_HEARTBEAT_TIMEOUT = 30
    stale = make_run(staff, status=TrainingRun.Status.RUNNING, worker="gpu-1:77", step=12, total_steps=40,
                     heartbeat_at=timezone.now() - timedelta(seconds=31))
    fresh = make_run(staff, status=TrainingRun.Status.RUNNING, heartbeat_at=timezone.now())
    assert services.runs_reap_stale() == 1
    stale.refresh_from_db(), fresh.refresh_from_db()
    assert stale.status == TrainingRun.Status.FAILED
    assert "gpu-1:77 stopped sending heartbeats for over 30 s at step 12/40" in stale.error
    assert "Resume" in stale.error
    assert fresh.status == TrainingRun.Status.RUNNING


def test_activation_switches_and_rolls_back(staff):
    first = make_run(staff, status=TrainingRun.Status.COMPLETED, artifacts="runs/1/model")
    second = make_run(staff, status=TrainingRun.Status.COMPLETED, artifacts="runs/2/model")
    services.run_activate(run=first, user=staff)
    services.run_activate(run=second, user=staff)
    assert selectors.active_activation().run == second
    services.run_rollback(user=staff)
    assert selectors.active_activation().run == first
    assert Activation.objects.count() == 3  # history kept


def test_the_run_page_query_count_does_not_grow_with_logged_steps(client, staff, django_assert_max_num_queries):
    run = make_run(staff, status=TrainingRun.Status.COMPLETED)
    RunLog.objects.bulk_create([RunLog(run=run, step=s, values={"loss": 1.0 / s}) for s in range(1, 301)])
    client.force_login(staff)
    with django_assert_max_num_queries(12):
        response = client.get(reverse("run_detail", args=[run.pk]))
    assert response.status_code == 200
    assert '"loss": [1.0, 0.5' in response.content.decode().replace("&quot;", '"')


def test_a_cluster_run_keeps_its_own_mixture_learning_rate(client, staff):
    client.force_login(staff)
    response = client.post(reverse("run_new"), {**FORM_DEFAULTS, "name": "clustered", "user_model": "cluster",
                                                "lr_mixture": "1.0", "with_baseline": ""})
    run = TrainingRun.objects.get(name="clustered")
    assert response.status_code == 302
    assert run.config["user_model"] == "cluster" and run.config["lr_mixture"] == 1.0


@pytest.mark.parametrize("ended", [TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED])
def test_a_baseline_is_not_trained_when_its_main_run_ended_badly(staff, ended):
    from trainer.worker.training import execute

    baseline = make_run(staff, name="baseline")
    main = make_run(staff, name="main", status=ended, baseline=baseline)
    assert execute(baseline.pk) == TrainingRun.Status.CANCELLED
    baseline.refresh_from_db()
    assert baseline.status == TrainingRun.Status.CANCELLED and baseline.worker == ""
    assert f"the run it is the baseline of (run {main.pk})" in baseline.error and "Resume that run" in baseline.error


def test_a_baseline_whose_main_run_completed_is_trained(staff):
    baseline = make_run(staff, name="baseline")
    make_run(staff, name="main", status=TrainingRun.Status.COMPLETED, baseline=baseline)
    assert services.baseline_skip_if_main_ended(run_id=baseline.pk) is False
    assert TrainingRun.objects.get(pk=baseline.pk).status == TrainingRun.Status.QUEUED


def test_the_run_page_phase_follows_the_work_inside_a_step_without_a_write_per_call(staff):
    from trainer.worker.training import PhaseText

    run = make_run(staff, status=TrainingRun.Status.RUNNING)
    phase = PhaseText(run.pk, every=60)
    phase("loading the model", 0, None)
    assert TrainingRun.objects.get(pk=run.pk).phase == "loading the model"
    phase("tokenising", 10, 268)
    phase("tokenising", 20, 268)  # within the interval: not written
    assert TrainingRun.objects.get(pk=run.pk).phase == "tokenising: 10 of 268"
    phase("tokenising", 268, 268)  # a phase's end always is
    assert TrainingRun.objects.get(pk=run.pk).phase == "tokenising: 268 of 268"
    phase("training", 3, 120)
    assert TrainingRun.objects.get(pk=run.pk).phase == "training: 3 of 120 micro-batches"
    assert TrainingRun.objects.get(pk=run.pk).phase_progress == (3, 120)  # the phase's own bar on the page
    TrainingRun.objects.filter(pk=run.pk).update(phase="micro-batch 3 of the run's 120, worded anew")
    reworded = TrainingRun.objects.get(pk=run.pk)  # the bar reads numbers, not the words
    assert reworded.phase_progress == (3, 120) and reworded.phase_progress_label == "Micro-batches"
    phase("loading the model", 0, None)
    assert TrainingRun.objects.get(pk=run.pk).phase_progress is None


def test_the_eta_comes_from_the_measured_step_time(client, staff):
    run = make_run(staff, status=TrainingRun.Status.RUNNING, started_at=timezone.now() - timedelta(minutes=10),
                   step=2, total_steps=12, heartbeat_at=timezone.now(), step_seconds=30.0,
                   phase="training: 5 of 40 micro-batches", phase_name="training", phase_done=5, phase_total=40)
    assert run.eta_seconds == 300.0  # 10 steps left at 30 s, not the 10 minutes so far (model load included)
    client.force_login(staff)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert 'about <span id="eta">5 min</span> left at 30.0 s a step' in page
    assert 'id="phase-progress" max="40" value="5"' in page


def test_the_run_page_acknowledges_a_cancel_at_once_and_says_how_long_it_has_run(client, staff):
    run = make_run(staff, status=TrainingRun.Status.RUNNING, started_at=timezone.now() - timedelta(minutes=3),
                   step=2, total_steps=10, heartbeat_at=timezone.now())
    client.force_login(staff)
    services.run_cancel(run=run)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert 'id="cancel-requested"' in page and "stops after the current micro-batch" in page
    assert 'id="elapsed">running for 3 min</span>' in page


def test_the_time_estimate_comes_from_runs_measured_on_the_listening_workers_with_its_range(db, staff, test_redis,
                                                                                        settings, tiny_model_path):
    from trainer import devices

    settings.BASE_MODEL = str(tiny_model_path)
    for key in test_redis.scan_iter(match=devices.KEY + "*"):
        test_redis.delete(key)
    done = {"status": TrainingRun.Status.COMPLETED, "config": {"user_model": "individual"}}
    for host, pairs_per_second in (("fast-box", 4.0), ("fast-box", 2.0), ("fast-box", 3.0), ("slow-box", 0.1)):
        TrainingRun.objects.create(worker=f"{host}:123", data_summary={"pairs_per_second": pairs_per_second,
                                                                       "base_model": "tiny-llama"}, **done)
    devices.report_publish(devices.DeviceReport(worker="train@fast-box", queues=["train"], device="cpu", gpus=0,
                                                gpu_memory=0, gpu_free=0, memory_total=8 << 30,
                                                memory_available=8 << 30, cpus=2))
    try:
        timing = services.time_estimate(120)  # 120 pair passes = 60 P-DPO pairs
    finally:
        devices.report_withdraw("train@fast-box")
    # Only fast-box's runs: 4, 2 and 3 pairs/s are 8, 4 and 6 passes/s.
    assert timing["measured_runs"] == 3 and timing["measured_on"] == "fast-box"
    assert (timing["estimate_low"], timing["estimated_seconds"], timing["estimate_high"]) == (15.0, 20.0, 30.0)
    everyone = services.time_estimate(120)  # nobody listening: every machine's runs
    assert everyone["measured_runs"] == 4 and everyone["estimate_high"] == 600.0


def test_a_version_at_chance_asks_before_it_is_activated(client, staff):
    run = TrainingRun.objects.create(name="coin", created_by=staff, status=TrainingRun.Status.COMPLETED,
                                     artifacts="runs/1/model", evaluation={"accuracy": 0.485, "n": 95})
    client.force_login(staff)
    asked = client.post(reverse("run_activate", args=[run.pk]))
    text = asked.content.decode()
    assert asked.status_code == 409 and "48.5% on 95 pairs: no better than chance" in text
    assert "Activate anyway" in text and not Activation.objects.exists()
    client.post(reverse("run_activate", args=[run.pk]), {"confirm": "yes"})
    assert Activation.objects.get().run == run
    good = TrainingRun.objects.create(name="good", created_by=staff, status=TrainingRun.Status.COMPLETED,
                                      artifacts="runs/2/model", evaluation={"accuracy": 0.9, "n": 95})
    assert client.post(reverse("run_activate", args=[good.pk])).status_code == 302  # no question
    assert Activation.objects.first().run == good


def test_a_run_is_cloned_noted_and_deleted_with_its_files(client, staff, settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path
    population(people=4, conversations=2)
    client.force_login(staff)
    config = {**{k: v for k, v in FORM_DEFAULTS.items() if not isinstance(v, bool)}, "name": "lists",
              "batch_size": 8, "micro_batch_size": 2, "algorithm": "p-ipo", "user_model": "cluster",
              "n_clusters": 3, "with_baseline": "", "processes": 2}
    assert client.post(reverse("run_new"), config).status_code == 302
    run = TrainingRun.objects.get(name="lists")
    form = client.get(reverse("run_new") + f"?clone={run.pk}").content.decode()
    for field, value in (("name", "lists (again)"), ("micro_batch_size", "2"), ("n_clusters", "3"),
                         ("processes", "2")):
        assert f'name="{field}" value="{value}"' in form, field
    assert '<option value="p-ipo" selected>' in form and '<option value="cluster" selected>' in form

    client.post(reverse("run_notes", args=[run.pk]), {"notes": "  Lists against prose.  "})
    run.refresh_from_db()
    assert run.notes == "Lists against prose."
    folder = tmp_path / "runs" / str(run.pk)
    folder.mkdir(parents=True)
    (folder / "run.log").write_text("2026-12-01 04:00:00 claimed by w:1\n2026-12-01 04:00:01 loading the model\n")
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "run.log: 2026-12-01 04:00:01 loading the model" in page and "Lists against prose." in page

    refused = client.post(reverse("run_delete", args=[run.pk]), {"confirm": "yes"}, follow=True)
    assert "cancel it before deleting it" in refused.content.decode() and folder.exists()  # still queued
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.CANCELLED)
    client.post(reverse("run_delete", args=[run.pk]), {"confirm": "yes"})
    assert not TrainingRun.objects.filter(pk=run.pk).exists() and not folder.exists()

    served = TrainingRun.objects.create(name="served", created_by=staff, status=TrainingRun.Status.COMPLETED,
                                        artifacts="runs/x/model", evaluation={"accuracy": 0.9, "n": 50})
    services.run_activate(run=served, user=staff)
    kept = client.post(reverse("run_delete", args=[served.pk]), {"confirm": "yes"}, follow=True)
    assert "has served chat as a version" in kept.content.decode() and TrainingRun.objects.filter(pk=served.pk)
