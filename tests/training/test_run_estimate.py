"""The start form's estimate is the run it starts: the optimizer steps it announces are the steps the training
loop runs on the same data (the same seeded split, the same step count), and its memory line adds up from
parts that are never negative."""

import re

import pytest
from django.urls import reverse

from tests.factories import person, rated_conversations
from tests.training.test_run_services import FORM_DEFAULTS
from trainer import devices
from trainer.core.config import TrainConfig
from trainer.models import TrainingRun

# People with 1 to 5 rated conversations (a pair each): rounding the held-out split per person and per
# conversation differs from taking the same share of all pairs.
CONVERSATIONS = [1, 2, 3, 4, 5, 3, 2, 4]
SMALL = {"batch_size": 1, "micro_batch_size": 1, "epochs": 1, "max_prompt_length": 64, "max_length": 160,
         "n_user_tokens": 2, "warmup_steps": 0, "checkpoint_every": 0, "diagnostics_every": 0,
         "unseen_fraction": 0.25, "test_fraction": 0.34, "with_baseline": ""}


@pytest.fixture
def no_worker_reports(test_redis):
    """No train worker listening: nothing to check the run's memory against."""
    for key in test_redis.scan_iter(match=devices.KEY + "*"):
        test_redis.delete(key)


@pytest.fixture
def uneven_people(db):
    for i, n in enumerate(CONVERSATIONS):
        rated_conversations(person(f"uneven{i}"), n=n)


def announced_steps(page: str) -> int:
    return int(re.search(r"<strong>(\d+)</strong> optimizer steps?", page).group(1))


@pytest.mark.parametrize("seed", [42, 7])
def test_the_start_form_announces_the_steps_the_training_loop_runs(client, staff, uneven_people, no_worker_reports,
                                                                   tiny_model_path, seed):
    from trainer.core.loop import train
    from trainer.worker.training import gather_pairs, run_split

    form = {**FORM_DEFAULTS, **SMALL, "name": "estimated", "seed": seed}
    client.force_login(staff)
    preview = client.get(reverse("run_preview"), form).content.decode()
    announced = announced_steps(preview)
    assert client.post(reverse("run_new"), form).status_code == 302
    run = TrainingRun.objects.get(name="estimated")

    # What the worker does with this run: gather its pairs, split them, and let the loop count its steps.
    split = run_split(run, gather_pairs(run.data_filter))
    result = train(TrainConfig.from_dict(run.config), str(tiny_model_path), split.train,
                   should_cancel=lambda: True, log=lambda *_: None)  # stops before its first step
    assert result.status == "cancelled" and result.step == 0
    assert announced == result.total_steps == len(split.train)  # batches of one pair, one epoch
    assert f"<strong>{len(split.train)}</strong> for training" in preview
    assert run.total_steps == announced  # known from the start: the run page never says "of ?"


def test_the_memory_estimate_shows_no_negative_part(client, staff, settings, bundled_model_path,
                                                    no_worker_reports):
    from trainer import preflight

    settings.BASE_MODEL = str(bundled_model_path)
    client.force_login(staff)
    form = {**FORM_DEFAULTS, "batch_size": 2, "micro_batch_size": 1, "max_prompt_length": 64, "max_length": 96}
    page = client.get(reverse("run_preview"), form).content.decode()
    line = re.search(r'<p[^>]*id="memory-estimate"[^>]*>(.*?)</p>', page, re.S).group(1)
    assert not re.search(r"-\s*\d", line), line
    estimate = preflight.check({k: v for k, v in form.items() if k in TrainConfig.__dataclass_fields__}).estimate
    assert estimate.base < 0  # the calibration's resident share of the weights: the case that showed "-0.1"
    assert all(value >= 0 for value in estimate.parts().values())
    assert sum(estimate.parts().values()) == pytest.approx(estimate.peak)
    assert re.search(r"weights [\d.]+, activations [\d.]+\)", line) and "runtime" not in line
