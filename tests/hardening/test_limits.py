"""Limits that hold on every path, and bad input that gets a clear answer instead of a server error."""

import io
import urllib.error
import urllib.request

import pytest
import redis
from django.test import Client
from django.urls import reverse

from users.models import Conversation, Profile, Reply, Turn

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("a", ["²", "١", "99999999999999999999", "-1", "x"])
def test_comparing_runs_with_odd_ids_is_a_404(client, staff, a):
    client.force_login(staff)
    assert client.get(reverse("run_compare"), {"a": a, "b": "1"}).status_code == 404


def test_stop_with_redis_down_says_what_happened(owner_client, owner, monkeypatch):
    from alignment_site import redis_client

    monkeypatch.setattr(redis_client, "_sync_client", redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1))
    turn = Turn.objects.create(conversation=Conversation.objects.create(user=owner), index=0, user_message="Hi")
    reply = Reply.objects.create(turn=turn, status=Reply.Status.STREAMING)
    response = owner_client.post(reverse("reply_stop", args=[reply.pk]))
    assert response.status_code == 503 and "Could not reach Redis" in response.content.decode()


def test_an_upload_over_the_limit_is_refused_before_reading_and_nothing_is_kept(client, staff, settings):
    settings.UPLOAD_MAX_MB = 1
    client.force_login(staff)
    big = io.BytesIO(b'{"user_id": "u1"}\n' * 70_000)  # 1.3 MB
    big.name = "survey.jsonl"
    response = client.post(reverse("dataset_import"), {"survey": big})
    assert response.status_code == 413
    assert "at most 1 MB (UPLOAD_MAX_MB)" in response.content.decode()
    assert Profile.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_one_person_cannot_hold_more_than_twelve_reply_streams(owner, asgi_server):
    session = Client()
    session.force_login(owner)
    cookie = session.cookies["sessionid"].value
    turn = Turn.objects.create(conversation=Conversation.objects.create(user=owner), index=0, user_message="Hi")
    replies = Reply.objects.bulk_create([Reply(turn=turn, position=i, status=Reply.Status.STREAMING)
                                         for i in range(13)])

    def open_stream(reply):
        request = urllib.request.Request(asgi_server + reverse("reply_stream", args=[reply.pk]),
                                         headers={"Cookie": f"sessionid={cookie}"})
        return urllib.request.urlopen(request, timeout=10)

    held = [open_stream(r) for r in replies[:12]]
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            open_stream(replies[12])
        assert refused.value.code == 429 and "close other tabs" in refused.value.read().decode()
        held.pop().close()
        for _ in range(50):  # the server notices the closed connection at its next read of Redis (<= 5 s)
            try:
                held.append(open_stream(replies[12]))
                break
            except urllib.error.HTTPError:
                __import__("time").sleep(0.2)
        assert len(held) == 12
    finally:
        for response in held:
            response.close()
