"""Headless Chromium: a staff member starts a run on the synthetic population,
watches the progress bar and curves grow, sees the per-user table and the user
map when it finishes, and activates it for chat."""

import pytest

from tests.personas import login
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
    page.click("text=Activate for chat")
    page.wait_for_selector("text=Activated: chat now uses this version.")
    assert Activation.objects.get().run == run
