"""A newcomer to the active version: its onboarding pool prepared by the worker, the questions asked one at a time
on the page, each answer kept as a pair and placing the person again, their first chat reply written with the
placed vectors, and a later refit serving only when it ranks their pairs better."""

import json

import pytest
import torch

from tests.chat.test_serving import queued_reply
from tests.factories import LONG, SHORT, person, population, rated_conversations
from trainer.core.placement import ranks_better
from trainer.models import OnboardingPool, TrainingRun
from trainer.pools import pool_request
from trainer.worker import onboarding as pool_worker
from trainer.worker import refit, serving
from users.accounts.onboarding import next_step
from users.collection.pairs import preference_pairs
from users.models import Conversation, Onboarding, Reply, VectorFit
from users.newcomer import services

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def newcomer_settings(tiny_serving, settings):
    settings.ONBOARDING_QUESTIONS = 4
    settings.FASTFIT_EVERY_PAIRS = 1000  # no refit asked for behind the test's back
    serving.VERSIONS.clear()


@pytest.fixture
def pool(active_run):
    population(people=3, conversations=6)  # consenting raters: the pool's candidates
    row = pool_request(run=active_run)
    assert row.status == OnboardingPool.Status.QUEUED
    assert pool_worker.execute(row.pk, worker="train@test") == OnboardingPool.Status.COMPLETED
    row.refresh_from_db()
    return row


def test_the_pool_is_measured_along_the_seen_peoples_directions_and_written_whole(pool, settings):
    assert pool.questions == 6 and pool.directions == 2  # six distinct prompts; three people span two directions
    assert pool.done == pool.total == 6 and pool.seconds > 0
    folder = settings.ARTIFACTS_DIR / pool.path
    document = json.loads((folder / "pool.json").read_text())
    assert {q["prompt"] for q in document["questions"]} >= {"How can I sleep better?"}
    assert all({q["a"], q["b"]} == {SHORT, LONG} for q in document["questions"])
    assert len(document["spread"]) == 2 and len(document["axes"]) == 2  # the map can show a newcomer
    assert (folder / "basis.safetensors").is_file() and not (folder.parent / "onboarding.partial").exists()
    assert pool_worker.execute(pool.pk) == "skipped"  # a redelivered task does nothing
    assert pool_request(run=pool.run) == pool  # a ready pool is not prepared again


def test_a_version_without_vectors_or_ratings_gets_no_pool_or_a_reason(active_run, staff):
    plain = TrainingRun.objects.create(name="plain", created_by=staff, status=TrainingRun.Status.COMPLETED,
                                       config={**active_run.config, "user_model": "none"},
                                       artifacts=active_run.artifacts)
    assert pool_request(run=plain) is None
    row = pool_request(run=active_run)  # nobody has rated anything yet
    assert pool_worker.execute(row.pk) == OnboardingPool.Status.FAILED
    row.refresh_from_db()
    assert "a pool needs at least 2" in row.error and not row.path
    assert not (pool_worker.run_folder(active_run.pk) / "onboarding").exists()


def test_a_newcomer_answers_on_the_page_and_each_answer_is_a_pair_that_moves_them(pool, client, settings):
    newbie = person("newbie")
    assert next_step(newbie).key == "questions"
    client.force_login(newbie)
    page = client.get("/welcome/questions/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "1 of 4" in html and 'id="onboarding-map"' in html and "I prefer this one" in html
    onboarding = Onboarding.objects.get(user=newbie)
    assert onboarding.strategy == "adaptive" and onboarding.asking
    question = questions_of(pool)[onboarding.asking]
    shown_left = question["a"] if onboarding.a_first else question["b"]
    first = onboarding.asking
    answered = client.post("/welcome/questions/answer/", {"key": first, "action": "left"}, HTTP_HX_REQUEST="true")
    assert answered.status_code == 200 and "2 of 4" in answered.content.decode()
    onboarding.refresh_from_db()
    assert len(onboarding.answers) == 1 and onboarding.asking != first and any(onboarding.coordinates)
    pairs = list(preference_pairs(users=[newbie]))
    assert len(pairs) == 1 and pairs[0]["chosen"][-1]["content"] == shown_left
    assert Conversation.objects.get(user=newbie).kind == Conversation.Kind.ONBOARDING
    stale = client.post("/welcome/questions/answer/", {"key": first, "action": "right"}, HTTP_HX_REQUEST="true")
    assert stale.status_code == 422 and "already answered" in stale.content.decode()
    skipped = client.post("/welcome/questions/answer/", {"key": onboarding.asking, "action": "skip"})
    assert skipped.status_code == 200 and "2 of 4" in skipped.content.decode()  # a skip is no answer

    reply = queued_reply(newbie)
    plan = serving.reply_plan(Reply.objects.select_related("turn__conversation__user").get(pk=reply.pk))
    served = serving.served_run(pool.run_id, pool.run.artifacts)
    assert plan.record["vectors"] == "onboarding" and plan.record["answers"] == 1
    assert not torch.equal(plan.soft_prompt, served.soft_prompt(None))

    enough = client.post("/welcome/questions/answer/", {"action": "enough"}, HTTP_HX_REQUEST="true")
    assert enough.status_code == 204 and enough["HX-Redirect"] == "/chat/"
    assert next_step(newbie).key != "questions"
    assert client.get("/welcome/questions/").status_code == 302
    panel = client.get("/me/panel/").content.decode()
    assert "with vectors placed by your first 1 answer." in panel and "Answer more" not in panel


def test_a_person_the_version_was_trained_on_is_not_asked(pool, owner):
    assert next_step(owner).key != "questions"
    with pytest.raises(services.NotDue):
        services.onboarding_begin(user=owner)


def test_questions_end_after_the_setting_and_never_repeat(pool, settings):
    newbie = person("newbie")
    onboarding, _ = services.onboarding_begin(user=newbie)
    asked = []
    while onboarding.status == Onboarding.Status.ASKING:
        asked.append(onboarding.asking)
        onboarding = services.onboarding_answer(user=newbie, key=onboarding.asking, choice="right")
    assert len(asked) == settings.ONBOARDING_QUESTIONS == len(set(asked))
    assert all(a["seconds"] < 1.0 for a in onboarding.answers)  # the server's work per answer


def test_a_refit_replaces_the_quick_vectors_only_when_it_ranks_the_persons_pairs_better(pool, settings):
    newbie = person("newbie")
    onboarding, _ = services.onboarding_begin(user=newbie)
    for _ in range(3):
        onboarding = services.onboarding_answer(user=newbie, key=onboarding.asking, choice="left")
    rated_conversations(newbie, n=3, prefers_short=False)
    fit = VectorFit.objects.create(user=newbie, run=pool.run, pairs_total=6)
    assert refit.vectors_refit(fit.pk) == VectorFit.Status.DONE
    fit.refresh_from_db()
    assert set(fit.ranking) == {"fit", "onboarding"}
    assert fit.outranked == (not ranks_better(fit.ranking["fit"], fit.ranking["onboarding"]))
    plan = serving.reply_plan(Reply.objects.select_related("turn__conversation__user").get(
        pk=queued_reply(newbie).pk))
    assert plan.record["vectors"] == ("onboarding" if fit.outranked else "fitted")
    VectorFit.objects.filter(pk=fit.pk).update(outranked=not fit.outranked)  # the other verdict serves the other
    plan = serving.reply_plan(Reply.objects.select_related("turn__conversation__user").get(
        pk=queued_reply(newbie).pk))
    assert plan.record["vectors"] == ("fitted" if fit.outranked else "onboarding")


def test_ranking_prefers_accuracy_then_the_lower_loss():
    assert ranks_better([0.8, 0.9], [0.7, 0.1])
    assert ranks_better([0.8, 0.4], [0.8, 0.5])
    assert not ranks_better([0.8, 0.5], [0.8, 0.5])  # a tie keeps the quick vectors
    assert not ranks_better([0.6, 0.1], [0.8, 0.9])


def questions_of(pool) -> dict[str, dict]:
    """The pool's questions as written in its file, by key."""
    from django.conf import settings

    document = json.loads((settings.ARTIFACTS_DIR / pool.path / "pool.json").read_text())
    return {q["key"]: q for q in document["questions"]}


def test_the_run_page_shows_the_pool_and_what_newcomers_did_with_it(pool, client, staff):
    newbie = person("newbie")
    onboarding, _ = services.onboarding_begin(user=newbie)
    services.onboarding_answer(user=newbie, key=onboarding.asking, choice="left")
    client.force_login(staff)
    html = client.get(f"/staff/runs/{pool.run_id}/").content.decode()
    assert "6 questions along 2 directions" in html
    assert "1 newcomer answered 1 question (adaptive); the server's work per answer: median" in html


def test_a_failed_pool_says_why_and_is_prepared_again_from_the_run_page(active_run, client, staff):
    row = pool_request(run=active_run)
    assert pool_worker.execute(row.pk) == OnboardingPool.Status.FAILED
    client.force_login(staff)
    html = client.get(f"/staff/runs/{active_run.pk}/").content.decode()
    assert "a pool needs at least 2" in html and "Prepare them again" in html
    population(people=3, conversations=6)
    assert client.post(f"/staff/runs/{active_run.pk}/onboarding/prepare/").status_code == 302
    row.refresh_from_db()
    assert row.status == OnboardingPool.Status.QUEUED and not row.error
    assert pool_worker.execute(row.pk) == OnboardingPool.Status.COMPLETED


@pytest.mark.parametrize("liked", [LONG, SHORT], ids=["minority", "majority"])
def test_a_newcomer_ranks_their_own_pairs_better_after_answering_than_with_the_generic_vectors(
        pool, settings, liked):
    """The version learned one majority (short replies: two of its three people) and one minority (long); a
    newcomer of either answers three questions by their taste, and their placed vectors rank the pool's other
    questions (prompts never asked) more by that taste than where they started (the seen people's mean), through
    the model; the minority's also more than the generic vectors (the majority's taste) do."""
    from safetensors.torch import load_file

    from trainer.core.artifacts import load_run
    from trainer.core.data import Pair
    from trainer.core.onboarding import PairJudge
    from trainer.worker.vectors import onboarding_vectors

    settings.ONBOARDING_QUESTIONS = 3
    newbie = person("newbie")
    onboarding, _ = services.onboarding_begin(user=newbie)
    texts = questions_of(pool)
    while onboarding.status == Onboarding.Status.ASKING:
        a_liked = texts[onboarding.asking]["a"] == liked
        onboarding = services.onboarding_answer(user=newbie, key=onboarding.asking,
                                                choice="left" if a_liked == onboarding.a_first else "right")
    asked = {a["key"] for a in onboarding.answers}
    other = SHORT if liked == LONG else LONG
    held_out = [Pair("newbie", [{"role": "user", "content": q["prompt"]}], [{"role": "assistant", "content": liked}],
                     [{"role": "assistant", "content": other}]) for key, q in texts.items() if key not in asked]
    assert len(asked) == 3 and len(held_out) == 3
    served = serving.served_run(pool.run_id, pool.run.artifacts)
    run = load_run(settings.ARTIFACTS_DIR / pool.run.artifacts)
    judge = PairJudge(run.model, run.tokenizer, run.config, held_out)
    placed, _ = onboarding_vectors(served.run_id, newbie.pk, served.soft_prompt(None))
    generic = served.soft_prompt(None)
    mean = load_file(settings.ARTIFACTS_DIR / pool.path / "basis.safetensors")["mean"].reshape(generic.shape)
    own, start = judge.margins(placed), judge.margins(generic + mean)
    assert bool((own > start).all())  # every held-out pair moved towards their taste
    if liked == LONG:
        assert bool((own > judge.margins(generic)).all())


def test_for_a_simulated_population_the_run_page_shows_simulated_newcomers_curve(active_run, client, staff):
    person("sim-a", group="length:detailed", prefs={"length": 1.0})  # two of the version's people, with rules
    person("sim-b", group="length:concise", prefs={"length": -1.0})
    population(people=3, conversations=6)
    row = pool_request(run=active_run)
    assert pool_worker.execute(row.pk) == OnboardingPool.Status.COMPLETED
    row.refresh_from_db()
    curve = row.curve
    assert curve["counts"] == [0, 1, 2, 3, 5, 7, 10] and curve["newcomers"] == 20
    assert set(curve["groups"]) == {"length:detailed", "length:concise"}
    for group in curve["groups"].values():
        assert all(0 <= mean <= 1 and half >= 0 for strategy in ("adaptive", "random") for mean, half in group[strategy])
    # before any answer everyone is predicted alike, and the two groups' rules disagree on every question
    detailed, concise = curve["groups"]["length:detailed"], curve["groups"]["length:concise"]
    assert detailed["adaptive"][0][0] + concise["adaptive"][0][0] == pytest.approx(1.0)
    client.force_login(staff)
    html = client.get(f"/staff/runs/{active_run.pk}/").content.decode()
    assert 'id="newcomer-curve"' in html and "length:detailed" in html


def test_a_pool_or_evaluation_whose_worker_fell_silent_is_failed_with_what_to_do(active_run, settings):
    from datetime import timedelta

    from django.utils import timezone

    from trainer.models import PersonalEvaluation
    from trainer.personalization.services import evaluations_reap_stale
    from trainer.pools import pools_reap_stale

    long_ago = timezone.now() - timedelta(seconds=settings.TRAIN_HEARTBEAT_TIMEOUT + 5)
    pool = OnboardingPool.objects.create(run=active_run, status=OnboardingPool.Status.RUNNING, heartbeat_at=long_ago)
    evaluation = PersonalEvaluation.objects.create(run=active_run, status=PersonalEvaluation.Status.RUNNING,
                                                   heartbeat_at=long_ago, phase="judging")
    fresh = PersonalEvaluation.objects.create(run=active_run, status=PersonalEvaluation.Status.RUNNING,
                                              heartbeat_at=timezone.now())
    assert pools_reap_stale() == 1 and evaluations_reap_stale() == 1
    pool.refresh_from_db()
    evaluation.refresh_from_db()
    fresh.refresh_from_db()
    assert pool.status == "failed" and pool.error.endswith("Prepare the pool again from the run page.")
    assert evaluation.status == "failed" and evaluation.phase == "" and "stopped sending heartbeats" in evaluation.error
    assert fresh.status == "running"
