"""A reply's token stream is its own: a stream left under the same reply id (an earlier database, or
another install sharing the Redis database) is never relayed as this reply's text (real Redis, uvicorn)."""

import pytest
from django.test import Client
from django.urls import reverse

from tests.sse import events
from users.models import Conversation, Reply, Turn

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_stale_stream_under_the_same_reply_id_is_ignored(owner, test_redis, asgi_server):
    turn = Turn.objects.create(conversation=Conversation.objects.create(user=owner), index=0, user_message="Hi")
    reply = Reply.objects.create(turn=turn, status=Reply.Status.STREAMING, chosen=True)
    # What an earlier database's reply of the same number, or another install's, left in Redis.
    test_redis.xadd(f"reply:{reply.pk}:stream", {"t": "someone else's private words"})
    test_redis.xadd(f"reply:{reply.pk}:stream", {"end": "done"})
    test_redis.xadd(f"reply:{reply.pk}:0123456789abcdef:stream", {"t": "another install's words"})
    # What this reply's worker writes.
    test_redis.xadd(reply.stream_key, {"t": "Hello, "})
    test_redis.xadd(reply.stream_key, {"t": "owner."})
    Reply.objects.filter(pk=reply.pk).update(status=Reply.Status.DONE, content="Hello, owner.")
    test_redis.xadd(reply.stream_key, {"end": "done"})

    client = Client()
    client.force_login(owner)
    seen = list(events(asgi_server + reverse("reply_stream", args=[reply.pk]),
                       session_cookie=client.cookies["sessionid"].value))
    text = " ".join(e.text for e in seen)
    assert [e.name for e in seen][-1] == "done" and "Hello, owner." in text
    assert "someone else" not in text and "another install" not in text


def test_each_reply_gets_its_own_token(owner):
    turn = Turn.objects.create(conversation=Conversation.objects.create(user=owner), index=0, user_message="Hi")
    first, second = Reply.objects.bulk_create([Reply(turn=turn, position=0), Reply(turn=turn, position=1)])
    assert len({first.stream_token, second.stream_token}) == 2 and len(first.stream_token) == 16
    assert first.stream_token in first.stream_key and first.stream_token in first.stop_key
