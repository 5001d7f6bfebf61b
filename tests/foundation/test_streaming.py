"""The whole path with real parts: a view stores the message, a real Celery
worker generates with the bundled SmolLM2 into Redis, uvicorn relays SSE."""

import pytest
from django.test import Client
from django.urls import reverse

from alignment_site import dispatch
from tests.services import TEST_MAX_NEW_TOKENS
from tests.sse import events
from users.chat import services
from users.conversations.services import GENERATE_TASK
from users.models import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def session(owner):
    client = Client()
    client.force_login(owner)
    return client


def stream_url(base: str, reply: Reply) -> str:
    return base + reverse("reply_stream", args=[reply.pk])


def test_a_reply_streams_token_by_token_and_survives_a_reload(owner, session, generate_worker, asgi_server):
    conversation = services.conversation_create(user=owner)
    reply = services.chat_send(conversation=conversation, text="Hello")
    seen = list(events(stream_url(asgi_server, reply), session_cookie=session.cookies["sessionid"].value))

    tokens = [e for e in seen if e.name == "token"]
    assert seen[-1].name == "done"
    assert len(tokens) >= 3, [e.name for e in seen]
    for before, after in zip(tokens, tokens[1:]):  # each event extends the text so far
        assert after.text.startswith(before.text) and len(after.text) > len(before.text)
    reply.refresh_from_db()
    assert reply.status == Reply.Status.DONE
    assert reply.content == tokens[-1].text
    assert 0 < reply.token_count <= TEST_MAX_NEW_TOKENS
    assert reply.model_name == "SmolLM2-135M-Instruct"
    page = session.get(reverse("chat_detail", args=[conversation.pk])).content.decode()
    assert reply.content.split()[0] in page and 'data-status="done"' in page


def test_a_reply_cut_at_the_token_limit_ends_its_stream_with_the_continue_form(owner, session, generate_worker,
                                                                               asgi_server):
    reply = services.chat_send(conversation=services.conversation_create(user=owner),
                               text="Write a long story about the sea, with many chapters.")
    seen = list(events(stream_url(asgi_server, reply), session_cookie=session.cookies["sessionid"].value))
    reply.refresh_from_db()
    assert reply.token_count == TEST_MAX_NEW_TOKENS and reply.serving["cut"] is True
    assert seen[-1].name == "done" and "continue-form" in seen[-1].data  # rendered off the event loop


def test_a_reconnecting_browser_resumes_after_its_last_event(owner, session, generate_worker, asgi_server):
    reply = services.chat_send(conversation=services.conversation_create(user=owner), text="Tell me about cats.")
    cookie = session.cookies["sessionid"].value
    first = []
    for event in events(stream_url(asgi_server, reply), session_cookie=cookie):
        first.append(event)
        if len(first) == 2:
            break  # the tab drops the connection mid-reply
    resumed = list(events(stream_url(asgi_server, reply), session_cookie=cookie, last_event_id=first[-1].id))
    resumed_ids = [tuple(map(int, e.id.split("-"))) for e in resumed if e.id]
    assert all(i > tuple(map(int, first[-1].id.split("-"))) for i in resumed_ids)
    reply.refresh_from_db()
    final_tokens = [e for e in resumed if e.name == "token"]
    assert reply.content == (final_tokens[-1].text if final_tokens else first[-1].text)


def test_stop_ends_generation_early(owner, session, generate_worker, asgi_server):
    reply = services.chat_send(conversation=services.conversation_create(user=owner),
                               text="Write a long story about the sea.")
    for event in events(stream_url(asgi_server, reply), session_cookie=session.cookies["sessionid"].value):
        if event.name == "token":
            assert session.post(reverse("reply_stop", args=[reply.pk])).status_code == 204
        if event.name == "done":
            break
    reply.refresh_from_db()
    assert reply.status == Reply.Status.STOPPED
    assert reply.token_count < TEST_MAX_NEW_TOKENS


def test_the_same_task_delivered_twice_generates_once(owner, generate_worker, test_redis):
    reply = services.chat_send(conversation=services.conversation_create(user=owner), text="Hi")
    dispatch.send(GENERATE_TASK, reply.pk, queue="generate")  # a duplicate delivery
    end_entries = []
    for _ in range(300):
        entries = test_redis.xrange(reply.stream_key)
        end_entries = [fields for _, fields in entries if b"end" in fields]
        if end_entries:
            break
        __import__("time").sleep(0.1)
    __import__("time").sleep(1.0)  # time for a second generation to show up, if there were one
    entries = test_redis.xrange(reply.stream_key)
    assert [fields for _, fields in entries if b"end" in fields] == [{b"end": b"done"}]
