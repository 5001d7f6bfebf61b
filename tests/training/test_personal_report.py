"""Repeats of a run with other seeds, and a report that pools them while showing each seed's figure (so a lucky
seed is seen as one); the start form's repeat field; the warning, on the run page and before activating, that a
group is served worse than by plain DPO."""

import pytest
from django.urls import reverse

from tests.factories import person
from trainer import services
from trainer.core.winrate import win_rate
from trainer.models import Activation, EvaluationItem, PersonalEvaluation, TrainingRun
from trainer.personalization.report import personalization_report, served_worse

pytestmark = pytest.mark.django_db

CONFIG = {"user_model": "individual", "batch_size": 4, "micro_batch_size": 4, "seed": 7}


def test_a_run_repeated_with_three_seeds_is_three_runs_each_with_its_baseline(staff, monkeypatch):
    monkeypatch.setattr(services, "run_enqueue", lambda *, run_id: True)
    first = services.run_create(created_by=staff, name="len", config=CONFIG, data_filter={}, with_baseline=True,
                                check_fit=False, repeats=3)
    series = TrainingRun.objects.filter(baseline__isnull=False).order_by("pk")
    assert [r.config["seed"] for r in series] == [7, 8, 9]
    assert [r.repeat_of_id for r in series] == [None, first.pk, first.pk]
    assert [r.baseline.config["seed"] for r in series] == [7, 8, 9]
    assert [r.name for r in series] == ["len · seed 7", "len · seed 8", "len · seed 9"]
    with pytest.raises(ValueError, match="1 to 10 seeds"):
        services.run_create(created_by=staff, name="x", config=CONFIG, data_filter={}, with_baseline=False,
                            check_fit=False, repeats=11)


def _evaluated(run_seed: int, repeat_of, outcomes_by_person: dict) -> TrainingRun:
    run = TrainingRun.objects.create(name=f"s{run_seed}", status=TrainingRun.Status.COMPLETED, repeat_of=repeat_of,
                                     config={**CONFIG, "seed": run_seed})
    evaluation = PersonalEvaluation.objects.create(run=run, status=PersonalEvaluation.Status.COMPLETED)
    for user, outcomes in outcomes_by_person.items():
        for k, value in enumerate(outcomes):
            EvaluationItem.objects.create(
                evaluation=evaluation, user=user, person=f"web-{user.username}", prompt=[], seed=k,
                replies={"own": "a b", "baseline": " ".join(["word"] * 100), "generic": "a", "base": "a"},
                judge=EvaluationItem.Judge.RULE, outcomes={"baseline": value, "generic": 0.5, "base": 1.0})
    return run


def test_the_report_pools_the_seeds_and_shows_each(client, staff):
    concise = [person(f"c{i}", group="length:concise", prefs={"length": -1.0}) for i in range(2)]
    detailed = [person(f"d{i}", group="length:detailed", prefs={"length": 1.0}) for i in range(3)]
    first = _evaluated(1, None, {concise[0]: [1.0, 1.0], concise[1]: [1.0, 0.5], detailed[0]: [0.0, 0.5]})
    _evaluated(2, first, {concise[0]: [0.0, 0.0], detailed[1]: [1.0, 1.0], detailed[2]: [0.5, 0.5]})
    found = personalization_report(first)
    groups = {g["name"]: g for g in found["groups"]}
    assert {"n": 6, "wins": 3, "ties": 1, "losses": 2}.items() <= groups["length:concise"]["vs"]["baseline"].items()
    assert groups["length:concise"]["vs"]["baseline"]["rate"] == pytest.approx(3.5 / 6)
    assert groups["length:detailed"]["people"] == 3 and groups["length:detailed"]["share"] == pytest.approx(0.6)
    seeds = {s["seed"]: s["groups"] for s in found["seeds"]}
    assert seeds[1]["length:concise"]["baseline"] == {"rate": pytest.approx(3.5 / 4), "n": 4}  # the lucky seed
    assert seeds[2]["length:concise"]["baseline"] == {"rate": 0.0, "n": 2}
    assert groups["length:concise"]["words"] == {"own": 2, "baseline": 100, "generic": 1, "base": 1}
    assert {s["feature"] for s in groups["length:concise"]["style"]} == {"length"}  # 2 words against 100
    assert found["verdicts"][0].startswith("no clear difference from plain DPO for the 60% length:detailed group")
    # Either run of the series shows the same pooled report.
    assert personalization_report(TrainingRun.objects.get(name="s2"))["judged"] == found["judged"] == 12

    client.force_login(staff)
    page = client.get(reverse("run_detail", args=[first.pk])).content.decode()
    assert "pooled over 2 seeds" in page and "length:concise: 88 % (n=4)" in page


def test_the_start_form_repeats_a_run_with_seeds_and_says_what_it_costs(client, staff, test_redis, monkeypatch):
    from tests.training.test_run_services import FORM_DEFAULTS
    from trainer import devices

    monkeypatch.setattr(services, "run_enqueue", lambda *, run_id: True)
    for key in test_redis.scan_iter(match=devices.KEY + "*"):  # no worker listens: nothing to check memory against
        test_redis.delete(key)
    client.force_login(staff)
    form = {**FORM_DEFAULTS, "name": "twice", "with_baseline": "on", "repeats": 2}
    preview = client.get(reverse("run_preview"), form).content.decode()
    assert "Repeated with 2 seeds (42 to 43): 2 runs, each with its plain-DPO baseline" in preview
    assert client.post(reverse("run_new"), form).status_code == 302
    assert sorted(TrainingRun.objects.values_list("name", flat=True)) == [
        "twice · seed 42", "twice · seed 42 · plain DPO baseline", "twice · seed 43",
        "twice · seed 43 · plain DPO baseline"]


def _group(name: str, people: int, share: float, **baseline) -> dict:
    return {"name": name, "people": people, "share": share, "vs": {"baseline": baseline, "generic": {"n": 0}}}


def test_a_group_is_served_worse_only_when_its_whole_interval_lies_below_half():
    groups = [
        _group("better", 14, 0.7, rate=0.80, low=0.70, high=0.90, n=84),
        _group("unclear", 3, 0.15, rate=0.42, low=0.30, high=0.55, n=36),  # below half, but so is chance
        _group("at the edge", 1, 0.05, rate=0.40, low=0.30, high=0.50, n=20),  # the interval reaches half
        _group("worse", 6, 0.3, rate=0.31, low=0.19, high=0.44, n=36),
        _group("not judged", 2, 0.1, rate=None, low=None, high=None, n=0),
    ]
    assert served_worse(groups) == [{"name": "worse", "people": 6, "share": 0.3, "rate": 0.31, "low": 0.19,
                                     "high": 0.44, "n": 36}]
    assert served_worse([_group("no baseline", 3, 1.0)]) == []  # the generic vectors are no stand-in
    # from counts: 1 win in 4 is not enough to tell (the interval reaches 75 %); 5 wins and 2 ties in 24 are
    few, many = win_rate([1.0, 0.0, 0.0, 0.0]).to_dict(), win_rate([1.0] * 5 + [0.5] * 2 + [0.0] * 17).to_dict()
    assert few["high"] == 0.75 and many["rate"] == 0.25 and many["high"] < 0.5
    assert [g["name"] for g in served_worse([_group("few", 1, 0.5, **few), _group("many", 1, 0.5, **many)])] \
        == ["many"]


def _served_worse_for_the_concise(staff) -> TrainingRun:
    """Two concise people whose own vectors lose to plain DPO in 7 of 8 prompts; three detailed ones who win."""
    concise = [person(f"c{i}", group="length:concise", prefs={"length": -1.0}) for i in range(2)]
    detailed = [person(f"d{i}", group="length:detailed", prefs={"length": 1.0}) for i in range(3)]
    return _evaluated(1, None, {concise[0]: [0.0, 0.0, 0.0, 0.5], concise[1]: [0.0, 0.0, 0.0, 0.0],
                                detailed[0]: [1.0, 1.0], detailed[1]: [1.0, 0.5], detailed[2]: [1.0, 1.0]})


def test_the_run_page_warns_when_a_group_is_served_worse_than_by_plain_dpo(client, staff):
    run = _served_worse_for_the_concise(staff)
    client.force_login(staff)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert 'data-part="served-worse"' in page
    assert "Served worse than by plain DPO: the 40% length:concise group (2 people): 6% [0, " in page
    assert "length:detailed group (3" not in page.split('data-part="served-worse"')[1].split("</p>")[0]


def test_the_run_page_has_no_warning_when_no_group_is_served_worse(client, staff):
    concise = [person(f"c{i}", group="length:concise", prefs={"length": -1.0}) for i in range(2)]
    run = _evaluated(1, None, {concise[0]: [0.0, 1.0, 0.0, 0.5], concise[1]: [1.0, 1.0, 0.0, 0.0]})
    client.force_login(staff)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert 'data-part="verdicts"' in page and 'data-part="served-worse"' not in page
    assert "Served worse" not in page


def test_activating_a_version_that_serves_a_group_worse_asks_first(client, staff):
    run = _served_worse_for_the_concise(staff)
    TrainingRun.objects.filter(pk=run.pk).update(artifacts="runs/1/model", evaluation={"accuracy": 0.9, "n": 95})
    client.force_login(staff)
    asked = client.post(reverse("run_activate", args=[run.pk]))
    text = asked.content.decode()
    assert asked.status_code == 409 and not Activation.objects.exists()
    assert "<p>Served worse than by plain DPO: the 40% length:concise group (2 people): 6% [0, " in text
    assert "no better than chance" not in text and "<p>Activate it anyway?</p>" in text
    client.post(reverse("run_activate", args=[run.pk]), {"confirm": "yes"})
    assert Activation.objects.get().run_id == run.pk


def test_a_version_at_chance_that_serves_a_group_worse_names_both_reasons(client, staff):
    run = _served_worse_for_the_concise(staff)
    TrainingRun.objects.filter(pk=run.pk).update(artifacts="runs/1/model", evaluation={"accuracy": 0.485, "n": 95})
    client.force_login(staff)
    text = client.post(reverse("run_activate", args=[run.pk])).content.decode()
    assert "no better than chance" in text and "Served worse than by plain DPO" in text


def test_a_version_that_serves_no_group_worse_is_activated_without_a_question(client, staff):
    concise = [person(f"c{i}", group="length:concise", prefs={"length": -1.0}) for i in range(2)]
    run = _evaluated(1, None, {concise[0]: [0.0, 1.0, 0.0, 0.5], concise[1]: [1.0, 1.0, 0.0, 0.0]})
    TrainingRun.objects.filter(pk=run.pk).update(artifacts="runs/1/model", evaluation={"accuracy": 0.9, "n": 95})
    client.force_login(staff)
    assert client.post(reverse("run_activate", args=[run.pk])).status_code == 302
    assert Activation.objects.get().run_id == run.pk
