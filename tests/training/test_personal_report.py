"""Repeats of a run with other seeds, and a report that pools them while showing each seed's figure (so a lucky
seed is seen as one); the start form's repeat field."""

import pytest
from django.urls import reverse

from tests.factories import person
from trainer import services
from trainer.models import EvaluationItem, PersonalEvaluation, TrainingRun
from trainer.personalization.report import personalization_report

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
