"""Every participant and staff page at a desktop (1366x768) and a phone (390x844) size: no fixed or sticky element
covers text the page needs read, and every slider's track is at least 120 px wide. Checked through the element
boxes Chromium lays out, at the top of the page and at its end (a chat only at its end, where it opens)."""

import pytest

from tests.personas import PASSWORD, login
from users.chat import services as chat
from users.collection import services as collection
from users.survey.services import survey_save

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]

SIZES = {"desktop": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}
LONG = ("A reply long enough to need reading in full: it explains the answer step by step, gives an example "
        "and ends with a short summary of what to do next. ") * 4

# Boxes of text elements that a fixed or sticky element overlaps inside the viewport, and sliders under 120 px.
LAYOUT = """
() => {
  // checkVisibility: false inside a closed <details>, display:none or visibility:hidden.
  const seen = e => { const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && e.checkVisibility({visibilityProperty: true, opacityProperty: true}); };
  const inView = r => r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth;
  const overlays = [...document.querySelectorAll("body *")].filter(e =>
    ["fixed", "sticky"].includes(getComputedStyle(e).position) && seen(e));
  const texts = [...document.querySelectorAll(
    "p, li, td, th, label, h1, h2, h3, legend, summary, .bubble, .reply-text, output")].filter(seen);
  const covered = [];
  for (const o of overlays) {
    const a = o.getBoundingClientRect();
    for (const t of texts) {
      if (o.contains(t) || t.contains(o)) continue;
      const b = t.getBoundingClientRect();
      if (!inView(b)) continue;
      const x = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const y = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (x > 2 && y > 2) covered.push(`${o.className || o.tagName} covers "${t.textContent.trim().slice(0, 40)}"`);
    }
  }
  const narrow = [...document.querySelectorAll("input[type=range]")].filter(seen)
    .filter(s => s.getBoundingClientRect().width < 120)
    .map(s => `${s.name}: ${Math.round(s.getBoundingClientRect().width)} px`);
  return {covered, narrow, sliders: document.querySelectorAll("input[type=range]").length};
}
"""


def check(page, where: str, *, top: bool = True) -> int:
    """Assert the layout at the top (unless ``top`` is false) and at the end of the page; the slider count."""
    found = None
    for position in (("top", "bottom") if top else ("bottom",)):
        page.evaluate("window.scrollTo(0, %s)" % ("0" if position == "top" else "document.body.scrollHeight"))
        page.wait_for_timeout(100)
        found = page.evaluate(LAYOUT)
        assert not found["covered"], f"{where} ({position}): {found['covered'][:5]}"
        assert not found["narrow"], f"{where} ({position}): sliders narrower than 120 px: {found['narrow'][:5]}"
    return found["sliders"]


@pytest.fixture
def pages(db, owner, staff, monkeypatch, sources_here):
    """Data behind every page: a collection turn with four long candidates, a second conversation waiting for
    its end-of-conversation answers, and a chat with a few long replies."""
    from django.contrib.auth import get_user_model

    monkeypatch.setattr(collection, "reply_enqueue", lambda *, reply_id: True)
    monkeypatch.setattr(chat, "reply_enqueue", lambda *, reply_id: True)
    rater = get_user_model().objects.create_user("rater", password=PASSWORD)
    survey_save(user=rater, stated_prefs={d: 60 for d in ("values", "creativity", "fluency", "factuality",
                                                           "diversity", "safety", "personalisation",
                                                           "helpfulness")},
                self_description="Plain answers, please.", lm_familiarity="Somewhat familiar")
    rating = collection.prism_conversation_start(user=rater, kind="unguided", text="How do I start running?")
    for reply in rating.turns.get(index=0).replies.order_by("position"):
        collection.reply_complete(reply=reply, content=f"Candidate {reply.position}. {LONG}")
    ending = collection.prism_conversation_start(user=rater, kind="unguided", text="What is a good breakfast?")
    turn = ending.turns.get(index=0)
    replies = list(turn.replies.order_by("position"))
    for reply in replies:
        collection.reply_complete(reply=reply, content=f"Breakfast idea {reply.position}.")
    collection.turn_rate(turn=turn, scores={r.pk: 20 + 10 * i for i, r in enumerate(replies)}, pick=None)
    talk = chat.conversation_create(user=rater)
    for question in ("Tell me about tea.", "And coffee?", "Which is better in the morning?"):
        reply = chat.chat_send(conversation=talk, text=question)
        collection.reply_complete(reply=reply, content=LONG)
    return {"rating": rating.pk, "ending": ending.pk, "chat": talk.pk}


@pytest.fixture
def sources_here(db):
    from importlib import import_module

    from users.models import ReplySource

    for name, prompt, temperature, top_p in import_module("users.migrations.0003_default_sources").DEFAULTS:
        ReplySource.objects.get_or_create(name=name, defaults={"system_prompt": prompt, "temperature": temperature,
                                                               "top_p": top_p})


@pytest.mark.parametrize("size", sorted(SIZES))
def test_no_page_hides_what_must_be_read_and_sliders_can_be_used(browser, asgi_server, owner, staff, pages, size):
    context = browser.new_context(viewport=SIZES[size], bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    base = asgi_server
    try:
        login(page, base, owner.username)  # not surveyed yet: the survey's 8 sliders
        page.goto(base + "/survey/")
        assert check(page, f"survey, {size}") >= 8
        page.context.clear_cookies()

        login(page, base, "rater")
        page.goto(f"{base}/collect/{pages['rating']}/")
        page.wait_for_selector("#rate-form")
        assert check(page, f"collection, {size}") == 4
        page.goto(f"{base}/collect/{pages['ending']}/")
        page.click("#end summary")
        assert check(page, f"end of a conversation, {size}") >= 14
        page.goto(f"{base}/chat/{pages['chat']}/")
        page.wait_for_selector(".bubble.model")
        check(page, f"chat, {size}", top=False)
        page.goto(base + "/me/panel/")
        check(page, f"side panel, {size}")
        page.goto(base + "/compare/")
        check(page, f"compare, {size}")
        page.context.clear_cookies()

        login(page, base, staff.username)
        for path in ("/staff/dataset/", "/staff/dataset/conversations/", "/staff/dataset/pairs/", "/staff/runs/",
                     "/staff/runs/new/", "/staff/status/", "/staff/queue/"):
            page.goto(base + path)
            check(page, f"{path}, {size}")
    finally:
        context.close()


def test_failed_htmx_requests_on_staff_pages_say_so(browser, asgi_server, staff):
    from trainer.models import TrainingRun

    run = TrainingRun.objects.create(name="live", created_by=staff, status=TrainingRun.Status.RUNNING,
                                     total_steps=10, config={"user_model": "individual", "loss": "dpo"})
    context = browser.new_context(viewport=SIZES["desktop"], bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        login(page, asgi_server, staff.username)
        page.route("**/staff/runs/preview/**", lambda route: route.fulfill(status=500, body="<html>x</html>",
                                                                           content_type="text/html"))
        page.goto(asgi_server + "/staff/runs/new/")  # the live preview loads, and fails
        page.wait_for_selector("#run-form + .request-error:has-text('error 500')")
        page.route(f"**/staff/runs/{run.pk}/progress/**", lambda route: route.abort())
        page.goto(f"{asgi_server}/staff/runs/{run.pk}/")  # the progress panel polls every 2 s, and cannot
        page.wait_for_selector("#progress + .request-error:has-text('could not be reached')")
    finally:
        context.close()
