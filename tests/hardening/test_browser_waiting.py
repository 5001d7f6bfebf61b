"""A reply still waiting for the model says where it stands in line, in the browser, instead of looking
stuck; and it stays waiting (nothing marks it failed on a viewer's clock)."""

import pytest

from tests.personas import login
from users.models import Conversation, Reply, Turn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


def queued_reply(user, text):
    turn = Turn.objects.create(conversation=Conversation.objects.create(user=user, title=text), index=0,
                               user_message=text)
    return Reply.objects.create(turn=turn, source="personal", chosen=True)  # queued; no worker is asked


def test_a_queued_reply_shows_its_place_in_line(page, owner, outsider, asgi_server):
    queued_reply(outsider, "Someone else's question, queued first")
    mine = queued_reply(owner, "My question")
    login(page, asgi_server, owner.username)
    page.goto(asgi_server + f"/chat/{mine.turn.conversation_id}/")
    page.wait_for_selector(f"#reply-{mine.pk} >> text=Waiting for the model: number 2 in line.")
    Reply.objects.filter(pk__lt=mine.pk, status=Reply.Status.QUEUED).update(status=Reply.Status.DONE)
    page.wait_for_selector(f"#reply-{mine.pk} >> text=Waiting for the model: next in line.", timeout=20_000)
    mine.refresh_from_db()
    assert mine.status == Reply.Status.QUEUED and mine.error == ""


def test_stop_pressed_twice_on_a_waiting_reply_leaves_a_stopped_bubble(page, owner, asgi_server):
    mine = queued_reply(owner, "Never mind")
    login(page, asgi_server, owner.username)
    page.goto(asgi_server + f"/chat/{mine.turn.conversation_id}/")
    page.locator(f"#reply-{mine.pk} button:has-text('Stop')").dblclick()  # two quick presses
    page.wait_for_selector(f'#reply-{mine.pk}[data-status="stopped"] >> text=Stopped.', timeout=20_000)
    assert page.locator(f"#reply-{mine.pk}").get_attribute("data-status") == "stopped"
    mine.refresh_from_db()
    assert mine.status == Reply.Status.STOPPED
