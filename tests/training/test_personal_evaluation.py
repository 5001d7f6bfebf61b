"""The personalization evaluation of a version, in-process with the tiny model: it starts by itself once a run and
its plain-DPO baseline have completed, writes the four replies to each person's held-out prompts, judges simulated
people by their hidden rule and leaves blind comparisons for a real person, whose ratings then count; the report
per group and per person, its exports, who may see it, and cancelling."""

import csv
import io
import json

import pytest
from django.urls import reverse

from tests.factories import rated_conversations
from trainer import services
from trainer.core.winrate import win_rate
from trainer.models import EvaluationItem, PersonalEvaluation, TrainingRun
from trainer.personalization import report
from trainer.personalization import services as evaluation_services
from users.chat import services as chat
from users.synthetic.rule import Persona, judge_outcome

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST = {"user_model": "individual", "batch_size": 4, "micro_batch_size": 4, "n_user_tokens": 2, "epochs": 1,
        "lr_lora": 1e-3, "lr_user": 1e-2, "warmup_steps": 0, "log_every": 1, "max_prompt_length": 64,
        "max_length": 160, "diagnostics_every": 0, "eval_max_new_tokens": 6}  # evaluated replies of 6 tokens
DATA = {"min_pairs": 1, "unseen_fraction": 0.0, "test_fraction": 0.34}
SMALL = {"prompts_per_person": 2, "max_new_tokens": 6, "blind_per_person": 1}


@pytest.fixture
def here(settings, tmp_path, tiny_model_path, monkeypatch):
    """Training and evaluation run in this process (the worker's own functions), with the tiny model; what
    would be queued is recorded instead."""
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.BASE_MODEL = str(tiny_model_path)
    queued = {"runs": [], "evaluations": []}
    monkeypatch.setattr(services, "run_enqueue", lambda *, run_id: queued["runs"].append(run_id) or True)
    monkeypatch.setattr(evaluation_services, "evaluation_enqueue",
                        lambda *, evaluation_id: queued["evaluations"].append(evaluation_id) or True)
    monkeypatch.setattr(evaluation_services, "DEFAULTS", {**evaluation_services.DEFAULTS, **SMALL})
    return queued


@pytest.fixture
def trained(people, owner, staff, here):
    """A P-DPO run and its baseline on six simulated people and one real person (the owner), both trained."""
    from trainer.worker import training

    rated_conversations(owner, n=3)
    run = services.run_create(created_by=staff, name="p", config=FAST, data_filter=DATA, with_baseline=True,
                              check_fit=False)
    assert training.execute(run.pk) == TrainingRun.Status.COMPLETED
    assert not PersonalEvaluation.objects.exists()  # the baseline has not finished: nothing to compare with yet
    assert training.execute(run.baseline_id) == TrainingRun.Status.COMPLETED
    run.refresh_from_db()
    return run


def test_a_run_and_its_baseline_done_start_the_evaluation_whose_replies_are_judged(trained, owner, here):
    from trainer.worker import personalization

    evaluation = PersonalEvaluation.objects.get()  # started by the second of the two to complete
    assert evaluation.run == trained and evaluation.baseline_id == trained.baseline_id
    assert here["evaluations"] == [evaluation.pk] and evaluation.settings["prompts_per_person"] == 2
    assert personalization.execute(evaluation.pk) == PersonalEvaluation.Status.COMPLETED
    evaluation.refresh_from_db()
    items = list(EvaluationItem.objects.filter(evaluation=evaluation))
    assert {i.person for i in items} == {f"web-sim{k}" for k in range(6)} | {"web-alice"}
    assert evaluation.done == evaluation.total == 4 * len(items) and evaluation.summary["people"] == 7

    simulated = [i for i in items if i.judge == EvaluationItem.Judge.RULE]
    assert len(simulated) == 12  # two held-out prompts each
    for item in simulated:
        assert set(item.replies) == {"own", "generic", "baseline", "base"}
        prefs = item.user.synthetic.hidden_profile["prefs"]
        rule = Persona(item.person, item.user.synthetic.group, prefs, 0.0)
        assert item.outcomes == {o: judge_outcome(rule, item.replies["own"], item.replies[o])
                                 for o in ("generic", "baseline", "base")}
    [mine] = [i for i in items if i.judge == EvaluationItem.Judge.PERSON]  # one blind comparison, not yet judged
    assert mine.outcomes is None and mine.conversation.user == owner
    shown = {r.source: r.content for r in mine.conversation.turns.get().replies.all()}
    assert shown == {f"compare-{'personal' if k == 'own' else k}": v for k, v in mine.replies.items()}

    before = report.personalization_report(trained)
    assert before["judged"] == 12 and before["pending"] == 1
    groups = {g["name"]: g for g in before["groups"]}
    assert set(groups) == {"A", "B", "(no answer)"}
    assert groups["A"]["people"] == 4 and groups["A"]["vs"]["baseline"]["n"] == 8
    in_a = [i.outcomes["baseline"] for i in simulated if i.user.synthetic.group == "A"]
    assert groups["A"]["vs"]["baseline"] == win_rate(in_a).to_dict()  # the group's own judgements, pooled
    assert groups["(no answer)"]["vs"]["baseline"]["n"] == 0
    assert any("the 57% A group" in v for v in before["verdicts"])  # 4 of 7 people
    assert [s["seed"] for s in before["seeds"]] == [42]

    # The owner rates the comparison on their compare page: the table counts it.
    replies = {r.source: r for r in mine.conversation.turns.get().replies.all()}
    scores = {replies["compare-personal"].pk: 80, replies["compare-baseline"].pk: 40,
              replies["compare-generic"].pk: 80, replies["compare-base"].pk: 95}
    chat.compare_rate(turn=mine.conversation.turns.get(), scores=scores)
    mine.refresh_from_db()
    assert mine.outcomes == {"baseline": 1.0, "generic": 0.5, "base": 0.0}
    after = report.personalization_report(trained)
    assert after["judged"] == 13 and after["pending"] == 0
    assert {g["name"]: g for g in after["groups"]}["(no answer)"]["vs"]["baseline"]["n"] == 1
    assert report.person_row(run=trained, person="web-alice")["vs"]["base"]["rate"] == 0.0


def test_the_report_is_staff_only_exports_json_and_csv_and_a_participant_sees_only_their_row(
        trained, client, owner, staff, here):
    from trainer.models import Activation
    from trainer.worker import personalization

    personalization.execute(PersonalEvaluation.objects.get().pk)
    Activation.objects.create(run=trained, activated_by=staff)
    page_url = reverse("run_detail", args=[trained.pk])
    exports = [reverse("run_report_export", args=[trained.pk, fmt]) for fmt in ("json", "csv")]
    client.force_login(owner)
    for url in (page_url, *exports):
        assert client.get(url).status_code == 403  # the staff-only page
    panel = client.get(reverse("personal_panel")).content.decode()
    assert 'id="my-evaluation"' in panel and "web-sim" not in panel
    assert "1 comparison waits for your ratings" in panel
    waiting = client.get(reverse("compare_home")).content.decode()
    assert 'id="waiting"' in waiting and "Waiting for your ratings (1)" in waiting

    client.force_login(staff)
    page = client.get(page_url).content.decode()
    assert 'data-part="personalization-groups"' in page and "n=8" in page and "[" in page
    exported = json.loads(client.get(exports[0]).content)
    assert exported["judged"] == 12 and {g["name"] for g in exported["groups"]} == {"A", "B", "(no answer)"}
    rows = list(csv.DictReader(io.StringIO(client.get(exports[1]).content.decode())))
    a_vs_dpo = next(r for r in rows if r["level"] == "group" and r["name"] == "A" and r["opponent"] == "baseline")
    assert int(a_vs_dpo["n"]) == 8 and float(a_vs_dpo["low"]) <= float(a_vs_dpo["win_rate"])
    assert sum(r["level"] == "person" for r in rows) == 7 * 3
    assert client.get(reverse("run_report_export", args=[trained.pk, "xml"])).status_code == 404
    compared = client.get(reverse("run_compare") + f"?a={trained.pk}&b={trained.baseline_id}").content.decode()
    assert compared.count('class="card personalization"') == 2 and "has no user model" in compared


def test_cancel_stops_a_queued_evaluation_at_once_and_a_running_one_keeps_nothing(trained, staff, client, here):
    from trainer.worker import personalization

    queued = PersonalEvaluation.objects.get()
    evaluation_services.evaluation_cancel(evaluation=queued)
    queued.refresh_from_db()
    assert queued.status == PersonalEvaluation.Status.CANCELLED

    client.force_login(staff)
    assert client.get(reverse("run_evaluate", args=[trained.pk])).status_code == 405
    client.post(reverse("run_evaluate", args=[trained.pk]))
    again = PersonalEvaluation.objects.filter(status=PersonalEvaluation.Status.QUEUED).get()
    with pytest.raises(evaluation_services.EvaluationStateError, match="being evaluated already"):
        evaluation_services.evaluation_start(run=trained)
    PersonalEvaluation.objects.filter(pk=again.pk).update(status=PersonalEvaluation.Status.RUNNING)
    client.post(reverse("evaluation_cancel", args=[again.pk]))  # asked while it runs: between batches
    PersonalEvaluation.objects.filter(pk=again.pk).update(status=PersonalEvaluation.Status.QUEUED)
    assert personalization.execute(again.pk) == PersonalEvaluation.Status.CANCELLED
    again.refresh_from_db()
    assert "nothing was kept" in again.error and not EvaluationItem.objects.exists()
    with pytest.raises(evaluation_services.EvaluationStateError, match="no user model"):
        evaluation_services.evaluation_start(run=trained.baseline)


def test_an_evaluation_writes_with_the_runs_own_token_budget_unless_told_otherwise(trained, here):
    PersonalEvaluation.objects.all().delete()
    TrainingRun.objects.filter(pk=trained.pk).update(config={**trained.config, "eval_max_new_tokens": 208})
    trained.refresh_from_db()
    assert evaluation_services.evaluation_start(run=trained, enqueue=False).settings["max_new_tokens"] == 208
    PersonalEvaluation.objects.all().delete()
    given = evaluation_services.evaluation_start(run=trained, overrides={"max_new_tokens": 40}, enqueue=False)
    assert given.settings["max_new_tokens"] == 40
