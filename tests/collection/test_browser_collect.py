"""Headless Chromium, as a new participant would: sign up, fill the survey, hold a 3-turn PRISM
conversation (rate 4, then 2, then 2 replies), end it with feedback, find the pairs in the export."""

import json

import pytest

from tests.collection.conftest import sources  # noqa: F401  (fixture)
from users.models import Conversation, Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


def rate_current_turn(page, scores):
    page.wait_for_selector("#rate-form")
    sliders = page.locator("input[type=range][form=rate-form]")  # each inside its reply's card
    assert sliders.count() == len(scores)
    for i, score in enumerate(scores):
        sliders.nth(i).fill(str(score))
    first = sliders.nth(0).get_attribute("id")
    assert page.locator(f"output[for='{first}']").inner_text() == str(scores[0])
    page.click("text=Save ratings")
    page.wait_for_selector("form.send textarea")


def set_every_slider(scope, value: int = 60, **chosen: int) -> None:
    """Move every slider in ``scope`` (a page or a locator) to ``value``, or to ``chosen[id]`` for the ids given:
    sliders start unset, and a form with one left unset is refused."""
    sliders = scope.locator("input[type=range]")
    for i in range(sliders.count()):
        slider = sliders.nth(i)
        slider.fill(str(chosen.get(slider.get_attribute("id"), value)))


def wait_for_replies(page, turn_index, n):
    page.wait_for_function(
        f"document.querySelectorAll('#turn-{turn_index} .bubble.model[data-status=\"done\"]').length === {n}",
        timeout=180_000)  # four replies in turn from one worker: generous for a loaded 2-core machine


def test_a_new_participant_collects_preferences_end_to_end(page, sources, generate_worker, asgi_server):  # noqa: F811
    base = asgi_server
    from users.models import ReplySource

    ReplySource.objects.update(max_new_tokens=24)  # the tiny model's text is noise: keep it short
    page.goto(base + "/signup/")
    page.fill("#id_username", "newcomer")
    page.fill("#id_password1", "a-long-pass-phrase")
    page.fill("#id_password2", "a-long-pass-phrase")
    page.click("button[type=submit]")
    page.wait_for_url("**/study/")  # what the study is, then consent
    assert page.locator("#study-introduction li").count() == 3
    page.click("text=Agree and continue")  # unticked: the browser refuses (required)
    assert page.url.endswith("/study/")
    page.check("input[name=agree]")
    page.click("text=Agree and continue")
    page.wait_for_url("**/survey/**")
    assert page.locator("#next-step").count() == 0  # the pointer is not shown on the page it points to
    assert page.input_value("#id_lm_familiarity") == ""  # nothing preselected
    page.select_option("#id_lm_familiarity", "Somewhat familiar")
    page.fill("#id_self_description", "I value clear and honest answers.")
    set_every_slider(page.locator("form.survey"), 60, id_pref_safety=85)
    page.click("text=Save my profile")
    page.wait_for_url(base + "/collect/")

    page.select_option("#id_kind", "values guided")
    page.fill("#id_message", "What makes a good friend?")
    page.click("button:has-text('Start')")
    wait_for_replies(page, 0, 4)
    assert "base-" not in page.content()  # the sources stay hidden
    rate_current_turn(page, [20, 90, 40, 10])

    for turn_index, message, scores in ((1, "Tell me more.", [70, 30]), (2, "Thanks!", [15, 65])):
        page.fill("form.send textarea", message)
        page.press("form.send textarea", "Enter")
        wait_for_replies(page, turn_index, 2)
        rate_current_turn(page, scores)

    page.click("summary:has-text('End this conversation')")
    set_every_slider(page.locator("form.end"), 70)
    page.fill("#id_open_feedback", "Helpful replies.")
    page.click("text=Finish conversation")
    page.wait_for_url(base + "/collect/")
    assert "1 of 6 conversations done" in page.inner_text(".progress")
    page.goto(base + "/chat/")
    assert "Hold conversation 2 of 6" in page.inner_text("#next-step")

    conversation = Conversation.objects.get(user__username="newcomer")
    assert conversation.ended_at and conversation.open_feedback == "Helpful replies."
    assert conversation.user.profile.stated_prefs["safety"] == 85
    assert Reply.objects.filter(turn__conversation=conversation, score__isnull=False).count() == 8

    response = page.request.get(base + "/data/pairs.jsonl")
    pairs = [json.loads(line) for line in response.text().splitlines()]
    assert [(p["turn"], p["score_chosen"], p["score_rejected"]) for p in pairs] == [
        (0, 90, 20), (0, 90, 40), (0, 90, 10), (1, 70, 30), (2, 65, 15)]
    assert {p["user_id"] for p in pairs} == {"web-newcomer"}  # a web account's exported id
    assert [m["role"] for m in pairs[-1]["prompt"]] == ["user", "assistant", "user", "assistant", "user"]
