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

from tests.collection.conftest import sources  # noqa: F401  (fixture)
from tests.personas import join_study, login, new_chat, screenshot
from tests.services import celery_worker_cmd, free_port, http_ready, running, service_env, worker_ready
from users.models import Reply, VectorFit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


def own_redis_url() -> str:
    from django.conf import settings

    parts = urlsplit(settings.REDIS_URL)
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(db + 3) % 16}"))


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
                  "--port", str(port), "--log-level", "warning"], env, tmp_path / "asgi.log",
                 http_ready(base + "/login/")), \
            running(celery_worker_cmd("generate", gen, threads=8), env, tmp_path / "gen.log",
                    worker_ready(tmp_path / "gen.log", gen)), \
            running(celery_worker_cmd("train", train), env, tmp_path / "train.log",
                    worker_ready(tmp_path / "train.log", train)):
        yield base


def compare(page, message: str) -> None:
    """Start a comparison from the nav and wait until its three replies are written."""
    page.click("nav >> text=Compare")
    page.fill("#id_message", message)
    page.click("button:has-text('Compare')")
    page.wait_for_url("**/compare/*/")
    page.wait_for_function("document.querySelectorAll('.candidate .bubble.model[data-status=done]').length === 3",
                           timeout=60_000)


def test_chat_compare_rate_and_see_the_refit_arrive(owner, page, stack, active_run):
    login(page, stack, owner.username)
    page.click("text=Chat")
    new_chat(page)
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
    page.click("summary:has-text('Why it behaves so')")  # the panel open: where the person is on the map
    assert page.locator("#personal-panel svg.user-map").is_visible()
    screenshot(page, "personal-chat", height=1150)  # the README's: the notice, the panel and the user map beside a reply

    compare(page, "How should I cook rice?")
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


def test_a_new_participant_finds_their_way_from_sign_up_to_compare_by_the_pages_alone(page, stack, sources):  # noqa: F811
    """As a newcomer on a fresh site would, without the README: the home page's Sign up, the study and consent,
    the survey, then each of the six conversations by following the next-step pointer from the home page, the
    thank-you, a chat whose reply is rendered from Markdown, and a blind comparison with its reveal."""
    from tests.collection.test_browser_collect import rate_current_turn, set_every_slider, wait_for_replies
    from users.conversations.markdown import render
    from users.models import ReplySource

    ReplySource.objects.update(max_new_tokens=8)  # the tiny model's text is noise: keep it short
    page.set_default_timeout(30_000)
    join_study(page, stack, "walker", "Short, plain answers suit me.")
    page.wait_for_url(stack + "/collect/")

    kinds = ["unguided", "values guided", "controversy guided"]
    for n in range(6):
        page.goto(stack + "/")
        assert f"Hold conversation {n + 1} of 6" in page.inner_text("#next-step")
        page.click("#next-step a")
        page.wait_for_url(stack + "/collect/")
        page.select_option("#id_kind", kinds[n % 3])
        page.fill("#id_message", f"Question number {n + 1}?")
        page.click("button:has-text('Start')")
        wait_for_replies(page, 0, 4)
        rate_current_turn(page, [10 + n, 80, 30, 50])
        page.click("summary:has-text('End this conversation')")
        set_every_slider(page.locator("form.end"), 65)
        page.click("text=Finish conversation")
        page.wait_for_url(stack + "/collect/")
    page.goto(stack + "/")
    assert "Thank you: you have finished all 6 conversations" in page.inner_text("#next-step")

    page.click("nav >> text=Chat")
    new_chat(page)
    page.fill("#message", "Tell me about **tea** in a list.")
    page.press("#message", "Enter")
    page.wait_for_selector('.bubble.model[data-status="done"]', timeout=60_000)
    reply = Reply.objects.get(turn__conversation__user__username="walker", turn__conversation__kind="chat")
    shown = page.inner_html('.bubble.model[data-status="done"] .reply-text')
    assert shown.strip() == str(render(reply.content)).strip() and reply.serving["vectors"] == "generic"

    compare(page, "How should I cook rice?")
    for i, value in enumerate(("70", "40", "20")):
        page.locator("input[type=range]").nth(i).fill(value)
    page.click("#rate-submit")
    page.wait_for_selector(".reveal")
    assert sorted(page.locator(".reveal").all_inner_texts()) == ["Base model", "Generic vectors", "Your vectors"]
