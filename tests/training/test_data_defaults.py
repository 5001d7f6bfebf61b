"""The start form and the command line start from settings read off the training pairs (the rules of
trainer/core/defaults.py), each shown with its reason; a named preset keeps its fixed values."""

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from trainer import data_defaults, devices, preflight, services
from trainer.forms import RunForm
from trainer.models import TrainingRun
from users.accounts.onboarding import CONSENT_GIVEN
from users.models import Conversation, Profile, Reply, Turn

TIGHT_NOISE = (2, 4, 6, 8)  # ratings of two equally good replies differ by under 10
WIDE_NOISE = (5, 12, 15, 18)  # ... by up to 20
PREFERENCES = (35, 45, 55, 40)


def rated_people(noise: tuple, *, people: int = 8, conversations: int = 6) -> None:
    """Each conversation one turn: the chosen reply (90) against one at the same pole (90 minus a noise margin)
    and two at the other (90 minus a preference margin); the chosen replies' lengths vary."""
    for u in range(people):
        user = get_user_model().objects.create(username=f"rater{u}")  # no password: hashing eight is seconds
        Profile.objects.create(user=user, completed_at=user.date_joined, consent=CONSENT_GIVEN)
        for c in range(conversations):
            i = u * conversations + c
            turn = Turn.objects.create(conversation=Conversation.objects.create(user=user, title=f"q{i}"), index=0,
                                       user_message=f"Question {i}?")
            Reply.objects.create(turn=turn, position=0, content="A reply " + "with words " * (3 + i % 30),
                                 status=Reply.Status.DONE, score=90, chosen=True)
            margins = (noise[i % 4], PREFERENCES[i % 4], PREFERENCES[(i + 1) % 4])
            for position, margin in enumerate(margins, 1):
                Reply.objects.create(turn=turn, position=position, content=f"Other reply {position}",
                                     status=Reply.Status.DONE, score=90 - margin)


@pytest.fixture
def no_worker_reports(test_redis):
    """No train worker listening, before and after: a report a test publishes does not outlive it."""
    for key in test_redis.scan_iter(match=devices.KEY + "*"):
        test_redis.delete(key)
    yield
    for key in test_redis.scan_iter(match=devices.KEY + "*"):
        test_redis.delete(key)


@pytest.fixture
def tiny_base(settings, tiny_model_path):
    settings.BASE_MODEL = str(tiny_model_path)
    return tiny_model_path


def start_page(client, query: str = "") -> str:
    return html.unescape(client.get(reverse("run_new") + query).content.decode())


def initial(page: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', page).group(1)


@pytest.mark.parametrize("noise,margin,valley", [(TIGHT_NOISE, "16", "11-20"), (WIDE_NOISE, "26", "21-30")])
def test_the_start_form_reads_the_margin_filter_off_the_peoples_own_noise(client, staff, no_worker_reports,
                                                                           noise, margin, valley):
    rated_people(noise)
    client.force_login(staff)
    page = start_page(client)
    assert initial(page, "min_margin") == margin
    assert (f"{margin} read off the data: pairs with a margin under {margin} are within these people's rating "
            f"noise (their margins fall from a hump near 0 to a valley at {valley}, then rise again with the "
            "preferences): ") in page
    # A third of the training pairs (one per conversation) is noise: it is what the filter leaves out.
    assert re.search(r"rise again with the preferences\): 33% of the \d+ training pairs left out", page)


def test_every_setting_read_off_the_data_has_its_reason_beside_its_field(client, staff, no_worker_reports):
    rated_people(TIGHT_NOISE)
    client.force_login(staff)
    page = start_page(client)
    for name in ("min_margin", "epochs", "lr_lora", "lr_user", "n_user_tokens", "n_clusters", "eval_max_new_tokens"):
        assert f'aria-describedby="id_{name}-reason"' in page and f'id="id_{name}-reason"' in page, name
    assert re.search(r"each person's pairs seen (twice|\d+ times), so a person with the median \d+ training", page)
    assert initial(page, "lr_user") == "0.08" and initial(page, "n_clusters") == "3"  # 7 seen people
    budget = int(initial(page, "eval_max_new_tokens"))
    assert budget % 16 == 0 and f"{budget} read off the data: 9 in 10 of the " in page
    assert "read off the training pairs (each says why)" in page


def test_a_named_preset_starts_from_its_fixed_values(client, staff, no_worker_reports):
    rated_people(TIGHT_NOISE)
    client.force_login(staff)
    page = start_page(client, "?preset=cpu")
    assert initial(page, "min_margin") == "1" and initial(page, "eval_max_new_tokens") == "96"
    assert "read off the data:" not in page and "the fixed CPU-sized settings" in page


def test_the_steps_a_reason_names_are_the_ones_the_run_takes(client, staff, no_worker_reports):
    rated_people(WIDE_NOISE)
    values = preflight.form_defaults()
    chosen = data_defaults.form_choices(values, RunForm.initial_data_filter())
    config = {**values, **{k: v for k, v in chosen.values.items() if k != "min_margin"}}
    data_filter = {**RunForm.initial_data_filter(), "min_margin": chosen.values["min_margin"]}
    preview = services.run_preview(data_filter=data_filter, config=config)
    assert preview["train_pairs"] == chosen.train_pairs and preview["steps"] == chosen.steps
    assert chosen.reasons["epochs"].startswith(f"{chosen.steps} steps of {values['batch_size']}: ")

    # Started as the page offers it, the run keeps what was read off the data.
    client.force_login(staff)
    page = start_page(client)
    form = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page))
    form = {k: v for k, v in form.items() if k in RunForm.base_fields}
    form.update(algorithm="p-dpo", user_model="individual", with_baseline="", name="read off")
    assert client.post(reverse("run_new"), form).status_code == 302
    run = TrainingRun.objects.get(name="read off")
    assert run.data_filter["min_margin"] == 26 and run.config["eval_max_new_tokens"] == chosen.values[
        "eval_max_new_tokens"] and run.total_steps == chosen.steps


def test_the_command_line_reads_the_same_choices_off_the_same_pairs(db, no_worker_reports, tiny_base, tmp_path,
                                                                    monkeypatch, capsys):
    rated_people(TIGHT_NOISE)
    form = data_defaults.form_choices(preflight.form_defaults(), RunForm.initial_data_filter())
    trained = {}

    def train_command(config, model_path, pairs, out, **kwargs):
        trained.update(config=config, pairs=pairs, record=kwargs["settings_record"])

    monkeypatch.setattr("trainer.core.cli.train_command", train_command)
    call_command("train", "--model", str(tiny_base), "--out", str(tmp_path / "run"))
    out = capsys.readouterr().out
    assert trained["record"]["read_off_data"] == form.reasons and trained["record"]["min_margin"] == 16
    assert f"Read off the {form.train_pairs} training pairs of {form.people} people" in out
    for name, value in form.values.items():
        assert f"  {name}={value:g}: {form.reasons[name]}" in out
        if name != "min_margin":
            assert getattr(trained["config"], name) == value, name
    assert all(p.score_chosen - p.score_rejected >= 16 for p in trained["pairs"])
    assert "of 144 pairs left out by the margin filter (16)" in out

    call_command("train", "--model", str(tiny_base), "--out", str(tmp_path / "run"), "--min-margin", "1",
                 "--set", "lr_user=0.2", "--steps", "3")
    assert trained["config"].lr_user == 0.2 and trained["config"].max_steps == 3 and len(trained["pairs"]) == 144
    assert "lr_user=" not in capsys.readouterr().out


def test_a_gpu_worker_gets_the_same_rules_on_the_papers_batch(client, staff, no_worker_reports):
    rated_people(TIGHT_NOISE)
    devices.report_publish(devices.DeviceReport(
        worker="train-gpu@box", queues=["train"], device="cuda", gpus=1, gpu_memory=80 * 2**30,
        gpu_free=80 * 2**30, memory_total=64 * 2**30, memory_available=64 * 2**30, cpus=8))
    client.force_login(staff)
    page = start_page(client)
    assert initial(page, "batch_size") == "32" and initial(page, "min_margin") == "16"
    assert re.search(r"read off the data: \d+ steps? of 32: each person's pairs seen", page)
    assert initial(page, "lr_lora") == "0.001" and initial(page, "lr_user") == "0.08"  # 7 people, not PRISM's
