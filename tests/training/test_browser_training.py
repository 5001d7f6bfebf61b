"""Headless Chromium: a staff member starts a run on the synthetic population,
watches the progress bar and curves grow, sees the per-user table and the user
map when it finishes, and activates it for chat."""

import pytest

from tests.personas import login, screenshot
from tests.services import train_worker
from trainer.models import Activation, TrainingRun
from users.synthetic.population import population_synthesize

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]

SMALL = {"batch_size": "4", "micro_batch_size": "4", "epochs": "3", "lr_lora": "0.001", "lr_user": "0.01",
         "warmup_steps": "0", "n_user_tokens": "2", "max_prompt_length": "64", "max_length": "160",
         "diagnostics_every": "5", "checkpoint_every": "0", "log_every": "1", "unseen_fraction": "0.2"}


def chart_points(page, name: str) -> int:
    return page.evaluate(f"Chart.getChart(document.querySelector('canvas[data-chart={name}]'))"
                         f".data.datasets[0].data.length")


def test_staff_start_watch_and_activate_a_run(staff, page, asgi_server, tiny_model_path, tmp_path):
    population_synthesize(population="demo", n_people=8, conversations_per_person=3, turns_per_conversation=1)
    with train_worker(tiny_model_path, tmp_path, "train-browser@localhost"):
        login(page, asgi_server, staff.username)
        page.click("text=Training")
        page.click("text=Start a run")
        page.fill("#id_name", "browser run")
        page.uncheck("#id_with_baseline")
        page.click("summary")  # open the hyperparameters
        for name, value in SMALL.items():
            page.fill(f"#id_{name}", value)
        page.dispatch_event("#id_name", "change")
        page.wait_for_selector("#preview >> text=optimizer steps")
        assert "from <strong>8</strong> people" in page.inner_html("#preview")
        page.click("text=Start training")

        page.wait_for_selector("#progress[data-status=running]", timeout=60_000)
        first_step = int(page.inner_text("#step"))
        page.wait_for_function(f"+document.getElementById('step').textContent > {first_step}", timeout=60_000)
        page.wait_for_function("Chart.getChart(document.querySelector('canvas[data-chart=loss]'))"
                               ".data.datasets[0].data.length >= 1", timeout=60_000)
        points_then = chart_points(page, "loss")
        page.wait_for_function(f"Chart.getChart(document.querySelector('canvas[data-chart=loss]'))"
                               f".data.datasets[0].data.length > {points_then}", timeout=60_000)

        page.wait_for_selector("#per-user tbody tr", timeout=120_000)  # the page reloads when the run ends
    run = TrainingRun.objects.get(name="browser run")
    assert run.status == TrainingRun.Status.COMPLETED, run.error
    assert page.locator("#per-user tbody tr").count() == len(run.evaluation["per_user"])
    assert page.locator("#map-canvas").is_visible()
    assert chart_points(page, "loss") == run.total_steps
    screenshot(page, "run-page")
    page.click("text=Activate for chat")
    page.wait_for_selector("text=Activated: chat now uses this version.")
    assert Activation.objects.get().run == run


def test_the_evaluation_follows_a_run_and_its_baseline_and_a_participant_s_ratings_count(
        staff, owner, page, browser, asgi_server, tiny_model_path, tmp_path):
    """Staff start a run with its plain-DPO baseline on simulated people and one real participant; the run page
    waits for the baseline, then follows the evaluation to its per-group table with intervals. The participant
    finds the blind comparison left for them, rates it, and the table's count of judged prompts grows."""
    from tests.factories import rated_conversations
    from trainer.models import PersonalEvaluation

    population_synthesize(population="demo", n_people=6, conversations_per_person=3, turns_per_conversation=1)
    rated_conversations(owner, n=3)
    with train_worker(tiny_model_path, tmp_path, "train-evaluate@localhost"):
        login(page, asgi_server, staff.username)
        page.goto(asgi_server + "/staff/runs/new/")
        page.fill("#id_name", "judged")
        page.check("#id_with_baseline")
        page.click("summary:has-text('Hyperparameters')")
        for name, value in {**SMALL, "epochs": "1", "diagnostics_every": "0", "unseen_fraction": "0",
                            "eval_max_new_tokens": "32"}.items():  # the tiny model never ends: keep its replies short
            page.fill(f"#id_{name}", value)
        page.click("text=Start training")
        page.wait_for_selector("#progress[data-status=running]", timeout=60_000)
        # The run ends, the page waits for its baseline, then follows the evaluation until its report shows.
        page.wait_for_selector("[data-part=personalization-groups] tbody tr", timeout=240_000)
    evaluation = PersonalEvaluation.objects.get()
    assert evaluation.status == PersonalEvaluation.Status.COMPLETED, evaluation.error
    groups = page.locator("[data-part=personalization-groups] tbody tr")
    assert groups.count() == 3  # the two hidden groups and the participant, who has none
    first_row = groups.nth(0).inner_text()
    assert "%" in first_row and "[" in first_row and "n=" in first_row  # a win-rate with its interval
    judged_before = page.inner_text("[data-part=judged]")
    assert "2 blind comparisons still wait for their person" in judged_before  # two of their prompts

    other = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    other.set_default_timeout(30_000)
    login(other, asgi_server, owner.username)
    other.goto(asgi_server + "/compare/")
    assert other.locator("#waiting li").count() == 2
    other.locator("#waiting a").first.click()
    sliders = other.locator("input[type=range]")
    assert sliders.count() == 4  # own vectors, plain DPO, generic vectors, base model, unlabelled
    for i, value in enumerate(("90", "30", "60", "20")):
        sliders.nth(i).fill(value)
    other.click("#rate-submit")
    other.wait_for_selector(".reveal")
    assert "Plain DPO" in other.locator(".reveal").all_inner_texts()
    other.context.close()

    page.reload()
    judged = int(page.inner_text("[data-part=judged]").split()[0])
    assert judged == int(judged_before.split()[0]) + 1
    assert "1 blind comparison still waits" in page.inner_text("[data-part=judged]")
