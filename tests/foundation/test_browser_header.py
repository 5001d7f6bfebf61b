"""In Chromium: the header holds a participant's links on one line at a desktop size and on at most two at a
phone's (390 px), without widening the page; and a chat's Continue stays on its newest turn when a turn is added."""

import pytest

from tests.personas import login

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SIZES = {"desktop": ({"width": 1366, "height": 768}, 1), "phone": ({"width": 390, "height": 844}, 2)}

# The lines the header's visible controls sit on (their vertical centres, rounded to a few pixels).
HEADER_LINES = """
() => {
  const header = document.querySelector("header.top");
  const boxes = [...header.querySelectorAll("a, button")].map(e => e.getBoundingClientRect())
    .filter(r => r.width > 0 && r.height > 0);
  const rows = new Set(boxes.map(r => Math.round((r.top + r.bottom) / 2 / 8)));
  return {rows: rows.size, width: document.documentElement.scrollWidth, header: header.scrollWidth};
}
"""


@pytest.mark.parametrize("size", sorted(SIZES))
def test_a_participants_header_fits_on_one_line_on_a_desktop_and_two_on_a_phone(browser, live_server, test_redis,
                                                                                owner, size):
    viewport, most = SIZES[size]
    context = browser.new_context(viewport=viewport, bypass_csp=True)
    page = context.new_page()
    try:
        login(page, live_server.url, owner.username)
        found = page.evaluate(HEADER_LINES)
        assert found["rows"] <= most, found
        assert found["width"] <= viewport["width"] and found["header"] <= viewport["width"], found
        for name in ("Chat", "Compare", "Rate", "Profile", "About", "Log out"):
            assert page.locator(f"header >> text={name}").first.is_visible(), name
    finally:
        context.close()


def test_continue_leaves_an_older_turn_once_a_newer_one_is_added(page, live_server, test_redis, owner):
    from users.chat import services as personal
    from users.models import Reply, Turn

    conversation = personal.conversation_create(user=owner)
    turn = Turn.objects.create(conversation=conversation, index=0, user_message="Tell me a long story.")
    Reply.objects.create(turn=turn, source="personal", status=Reply.Status.DONE, chosen=True, content="Once upon",
                         serving={"cut": True}, token_count=32)
    login(page, live_server.url, owner.username)
    page.goto(f"{live_server.url}/chat/{conversation.pk}/")
    assert page.locator("#turn-0 .continue-form").is_visible()
    # What the composer's htmx answer does: a new turn at the end of #turns (its own reply still being written).
    page.evaluate("""() => document.getElementById("turns").insertAdjacentHTML("beforeend",
      '<article class="turn" id="turn-1"><div class="bubble user">And then?</div></article>')""")
    assert not page.locator("#turn-0 .continue-form").is_visible()
