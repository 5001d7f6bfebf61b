"""Every participant and staff page at a desktop (1366x768) and a phone (390x844) size: no fixed or sticky element
covers text the page needs read, and every slider's track is at least 120 px wide. Checked through the element
boxes Chromium lays out, at the top of the page and at its end (a chat only at its end, where it opens)."""

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

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
    from users.accounts.onboarding import consent_give

    rater = get_user_model().objects.create_user("rater", password=PASSWORD)
    consent_give(user=rater)
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


# Open every <details>, fill empty required fields, and send each htmx control's request the way a person would
# (click, submit, change; "load" and "every" ones send by themselves): their names, to be checked afterwards.
SEND_EVERY_CONTROL = """
() => {
  document.querySelectorAll("details").forEach(d => d.open = true);
  const name = e => e.id || (e.tagName === "BUTTON" ? e.textContent.trim()
    : [...e.classList].filter(c => !c.startsWith("htmx-")).join(" ") || e.tagName);
  const controls = [...document.querySelectorAll("[hx-get], [hx-post]")];
  for (const el of controls) {
    const trigger = el.getAttribute("hx-trigger") || "";
    if (/\\b(load|every)\\b/.test(trigger)) continue;
    if (/from:body/.test(trigger)) { htmx.trigger(document.body, trigger.split(" ")[0]); continue; }
    if (el.tagName === "FORM") {
      el.querySelectorAll("textarea[required], input[required]").forEach(f => { if (!f.value) f.value = "x"; });
      htmx.trigger(el, "submit");
    } else if (/change/.test(trigger)) htmx.trigger(el, "change");
    else el.click();
  }
  return controls.map(name);
}
"""
# The controls whose failed request left no message after them (after the form they are in, as site.js puts it).
SILENT_CONTROLS = """
() => [...document.querySelectorAll("[hx-get], [hx-post]")].filter(el => {
  const anchor = el.closest("form") || el;
  const box = anchor.nextElementSibling;
  return !(box && box.classList.contains("request-error") && box.textContent.includes("error 500"));
}).map(e => e.id || e.outerHTML.slice(0, 80))
"""


def test_every_htmx_control_on_every_page_says_when_its_request_fails(browser, asgi_server, owner, staff, pages):
    """Every page a participant or staff uses, with every request htmx sends answered by a server error: each
    control that sent one shows the message beside it. Pages without htmx controls are plain forms and links,
    whose failures are whole pages."""
    from django.contrib.auth import get_user_model

    from trainer.models import TrainingRun
    from users.models import Conversation, Reply

    rater = get_user_model().objects.get(username="rater")
    talk = Conversation.objects.get(pk=pages["chat"])
    cut = Reply.objects.filter(turn__conversation=talk).order_by("-pk").first()
    Reply.objects.filter(pk=cut.pk).update(source="personal", serving={"cut": True})
    more = chat.conversation_create(user=rater)  # a failed reply (Retry) and one being written (Stop)
    failed = chat.chat_send(conversation=more, text="First question")
    Reply.objects.filter(pk=failed.pk).update(status=Reply.Status.FAILED, error="The worker stopped.")
    chat.chat_send(conversation=more, text="Second question")
    run = TrainingRun.objects.create(name="live", created_by=staff, status=TrainingRun.Status.RUNNING,
                                     total_steps=10, config={"user_model": "individual", "loss": "dpo"})
    participant = {"/survey/": 0, f"/collect/{pages['rating']}/": 0, f"/collect/{pages['ending']}/": 0,
                   f"/chat/{pages['chat']}/": 5, f"/chat/{more.pk}/": 3, "/me/panel/": 1, "/compare/": 0}
    staff_pages = {"/staff/dataset/": 0, "/staff/dataset/conversations/": 0, "/staff/dataset/pairs/": 0,
                   "/staff/runs/": 0, "/staff/runs/new/": 1, f"/staff/runs/{run.pk}/": 1}
    context = browser.new_context(viewport=SIZES["desktop"], bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(30_000)

    def fail_htmx(route):
        if route.request.headers.get("hx-request"):
            route.fulfill(status=500, body="<html><body>boom</body></html>", content_type="text/html")
        else:
            route.continue_()

    sent = {}
    try:
        for who, paths in ((rater.username, participant), (staff.username, staff_pages)):
            page.context.clear_cookies()
            page.unroute("**/*")
            login(page, asgi_server, who)
            page.route("**/*", fail_htmx)
            for path, least in paths.items():
                page.goto(asgi_server + path)
                page.wait_for_load_state("networkidle")
                controls = page.evaluate(SEND_EVERY_CONTROL)
                sent[path] = controls
                assert len(controls) >= least, f"{path}: expected {least} htmx controls, found {controls}"
                if controls:
                    try:
                        page.wait_for_function(f"({SILENT_CONTROLS})().length === 0", timeout=15_000)
                    except PlaywrightTimeout:
                        pass
                    silent = page.evaluate(SILENT_CONTROLS)
                    assert not silent, f"{path}: requests failed with no message beside them: {silent}"
    finally:
        context.close()
    # The chat's composer, its Continue, rating, Write it again, Retry and Stop, and the panel were all tried.
    chat_controls = " ".join(sent[f"/chat/{pages['chat']}/"] + sent[f"/chat/{more.pk}/"])
    for kind in ("composer", "continue-form", "rate-form", "regenerate-form", "personal", "Retry", "Stop"):
        assert kind in chat_controls, (kind, chat_controls)
