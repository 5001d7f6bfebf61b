"""Headless Chromium: log in, send a message, watch the reply arrive token by token."""

import pytest

from tests.personas import login, new_chat, screenshot
from users.conversations.markdown import render
from users.models import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]

RECORD_PARTIAL_TEXTS = """
() => {
  window.partialTexts = [];
  new MutationObserver(() => {
    const live = document.querySelector('.bubble.model[sse-connect] .reply-text');
    if (live && live.textContent.trim()) window.partialTexts.push(live.textContent);
  }).observe(document.getElementById('turns'), {subtree: true, childList: true, characterData: true});
}
"""


def test_a_participant_sees_the_reply_stream_in_and_stay_after_reload(owner, page, generate_worker, asgi_server):
    login(page, asgi_server, owner.username)
    new_chat(page)
    page.evaluate(RECORD_PARTIAL_TEXTS)
    page.fill("#message", "How can I sleep better?")
    page.press("#message", "Enter")
    page.wait_for_selector('.bubble.model[data-status="done"]', timeout=60_000)

    # Streamed as plain text; once done, the stored reply rendered from Markdown.
    content = Reply.objects.get().content.strip()
    partials = [t.strip() for t in page.evaluate("window.partialTexts")]
    assert content, "the finished reply is empty"
    assert any(p and len(p) < len(content) and content.startswith(p) for p in partials), partials[:5]
    assert page.input_value("#message") == ""  # the composer was cleared for the next message
    final = page.inner_html('.bubble.model[data-status="done"] .reply-text')
    assert final.strip() == str(render(Reply.objects.get().content)).strip()

    page.reload()
    assert page.inner_html('.bubble.model[data-status="done"] .reply-text') == final
    assert page.inner_text(".bubble.user") == "How can I sleep better?"
    screenshot(page, "chat")


def test_a_refused_or_failed_send_shows_its_message_and_keeps_the_text(owner, page, asgi_server):
    login(page, asgi_server, owner.username)
    new_chat(page)
    page.fill("#message", "x" * 10_000)
    page.press("#message", "Enter")
    page.wait_for_selector("#send-error:has-text('the limit is 4,000')", timeout=20_000)
    assert page.input_value("#message") == "x" * 10_000  # kept, to be shortened
    page.fill("#message", "   ")
    page.click("form.composer button[type=submit]")
    page.wait_for_function("!document.getElementById('send-error').textContent.includes('4,000')", timeout=20_000)
    assert page.inner_text("#send-error").strip()

    # The server fails, then cannot be reached: each says so beside the form.
    page.route("**/chat/**", lambda route: route.fulfill(status=500, body="<html><body>boom</body></html>",
                                                         content_type="text/html")
               if route.request.method == "POST" else route.continue_())
    page.fill("#message", "Hello")
    page.press("#message", "Enter")
    page.wait_for_selector(".request-error:has-text('error 500')", timeout=20_000)
    page.unroute("**/chat/**")
    page.route("**/chat/**", lambda route: route.abort() if route.request.method == "POST" else route.continue_())
    page.press("#message", "Enter")
    page.wait_for_selector(".request-error:has-text('could not be reached')", timeout=20_000)
    assert page.locator(".request-error").count() == 1 and page.input_value("#message") == "Hello"


def test_back_then_forward_shows_the_conversation_as_it_is_now(owner, page, asgi_server):
    login(page, asgi_server, owner.username)
    new_chat(page)
    page.fill("#message", "A question sent through htmx")
    page.press("#message", "Enter")
    page.wait_for_selector(".bubble.user:has-text('A question sent through htmx')")
    page.goto(asgi_server + "/chat/")
    page.go_back()
    page.wait_for_selector(".bubble.user:has-text('A question sent through htmx')", timeout=20_000)
    page.go_forward()
    page.wait_for_selector("h1:has-text('Chat')")
    page.go_back()
    assert page.locator(".bubble.user:has-text('A question sent through htmx')").count() == 1
