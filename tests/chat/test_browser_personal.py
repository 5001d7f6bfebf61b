"""Headless Chromium: a participant chats with the active version, compares it
blind with the generic vectors and the base model, rates, and sees the
refit of their vectors arrive ("updated from your last N ratings").

This module runs its own web server, generate worker (threads pool, batching,
the tiny model the version was trained on) and train worker, on a Redis
database of their own: the session's generate worker serves the bundled model
on the test Redis database and must not pick these replies up.
"""

import sys
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from tests.personas import login
from tests.services import free_port, http_ready, running, service_env, worker_ready
from users.models import Reply, VectorFit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


def own_redis_url() -> str:
    from django.conf import settings

    parts = urlsplit(settings.REDIS_URL)
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(db + 3) % 16}"))


def worker_cmd(queue: str, name: str, pool: list[str]) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "alignment_site", "worker", "-Q", queue, *pool, "-n", name,
            "--without-gossip", "--without-mingle", "-l", "info"]


@pytest.fixture
def stack(active_run, artifacts_dir, tiny_model_path, tmp_path):
    url = own_redis_url()
    redis.Redis.from_url(url).flushdb()
    env = service_env(tiny_model_path, tmp_path, REDIS_URL=url, ARTIFACTS_DIR=str(artifacts_dir),
                      CHAT_MAX_NEW_TOKENS="8", FASTFIT_EVERY_PAIRS="2", FASTFIT_ROUNDS="1",
                      CHAT_RATE_PER_MINUTE="100")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gen, train = "generate-personal@localhost", "train-personal@localhost"
    with running([sys.executable, "-m", "uvicorn", "alignment_site.asgi:application", "--host", "127.0.0.1",
                  "--port", str(port), "--log-level", "warning"], env, tmp_path / "asgi.log", http_ready(base + "/login/")), \
            running(worker_cmd("generate", gen, ["-P", "threads", "-c", "8"]), env, tmp_path / "gen.log",
                    worker_ready(tmp_path / "gen.log", gen)), \
            running(worker_cmd("train", train, ["-P", "solo", "-c", "1"]), env, tmp_path / "train.log",
                    worker_ready(tmp_path / "train.log", train)):
        yield base


def test_chat_compare_rate_and_see_the_refit_arrive(owner, page, stack, active_run):
    login(page, stack, owner.username)
    page.click("text=Chat")
    page.click("text=New chat")
    page.wait_for_selector("#vectors-notice >> text=with your own vectors from training")
    # the user map: four points, and only the person's own has a name
    assert page.locator("#personal-panel svg.user-map circle").count() == 4
    assert page.locator("#personal-panel svg.user-map title").all_text_contents() == ["you"]
    assert "sim-a" not in page.content() and "sim-b" not in page.content()
    page.fill("#message", "Tell me about tea.")
    page.press("#message", "Enter")
    page.wait_for_selector('.bubble.model[data-status="done"]', timeout=60_000)
    reply = Reply.objects.get(turn__conversation__user=owner)
    assert reply.serving["version"] == active_run.pk and reply.serving["vectors"] == "personal"

    page.click("nav >> text=Compare")
    page.fill("#id_message", "How should I cook rice?")
    page.click("button:has-text('Compare')")
    page.wait_for_url("**/compare/*/")
    page.wait_for_function("document.querySelectorAll('.candidate .bubble.model[data-status=done]').length === 3",
                           timeout=60_000)
    assert page.locator(".reveal").count() == 0  # unlabelled until rated
    sliders = page.locator("input[type=range]")
    for i, value in enumerate(("90", "40", "10")):
        sliders.nth(i).fill(value)
    page.click("#rate-submit")
    page.wait_for_selector(".reveal")
    assert sorted(page.locator(".reveal").all_inner_texts()) == ["Base model", "Generic vectors", "Your vectors"]

    page.wait_for_selector("#fit-update", timeout=90_000)  # the panel polls while the refit runs
    assert "Updated from your last 2 ratings" in page.inner_text("#fit-update")
    fit = VectorFit.objects.get(user=owner)
    assert fit.status == VectorFit.Status.DONE and fit.pairs_used == 2

    page.goto(stack + f"/chat/{reply.turn.conversation_id}/")
    page.wait_for_selector("#vectors-notice >> text=updated from your last 2 ratings")
    page.fill("#message", "And coffee?")
    page.press("#message", "Enter")
    page.wait_for_function("document.querySelectorAll('.bubble.model[data-status=done]').length === 2",
                           timeout=60_000)
    latest = Reply.objects.filter(turn__conversation__user=owner, source="personal").order_by("-pk").first()
    assert latest.serving["vectors"] == "fitted" and latest.serving["fit"] == fit.pk
