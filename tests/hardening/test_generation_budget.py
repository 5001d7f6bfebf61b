"""One budget for every path that asks the model for replies: chat, compare, starting and continuing a
PRISM conversation, and Retry; refused with the same kind of message, nothing written."""

import pytest
from django.urls import reverse

from tests.collection.conftest import finish, rate
from users.collection import services as collection
from users.conversations import services as replies
from users.models import Conversation, Reply

pytestmark = pytest.mark.django_db


@pytest.fixture
def fresh_budget(settings, test_redis, owner):
    settings.CHAT_RATE_PER_MINUTE = 0
    settings.GENERATION_MAX_PENDING = 8
    test_redis.delete(*test_redis.keys(f"ratelimit:{owner.pk}:*") or ["none"])
    return settings


def test_starting_prism_conversations_stops_when_eight_replies_wait(client, surveyed, enqueued, fresh_budget):
    client.force_login(surveyed)
    url = reverse("collect_start")
    for _ in range(2):  # 4 candidates each
        assert client.post(url, {"kind": "unguided", "message": "Hello"}).status_code == 302
    response = client.post(url, {"kind": "unguided", "message": "Hello"})
    assert response.status_code == 422
    assert "8 of your replies are still waiting or being written (at most 8 at a time)" in response.content.decode()
    assert Conversation.objects.filter(user=surveyed).count() == 2
    assert Reply.objects.filter(turn__conversation__user=surveyed, status=Reply.Status.QUEUED).count() == 8


def test_the_per_minute_limit_counts_prism_starts_too(client, surveyed, enqueued, fresh_budget):
    fresh_budget.CHAT_RATE_PER_MINUTE = 1
    client.force_login(surveyed)
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Hi")
    finish(conversation.turns.get(index=0))
    response = client.post(reverse("collect_start"), {"kind": "unguided", "message": "Again"})
    assert response.status_code == 422 and "You have sent 1 messages in the last minute" in response.content.decode()


def test_continuing_a_prism_conversation_counts(surveyed, enqueued, fresh_budget):
    fresh_budget.GENERATION_MAX_PENDING = 5
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Hi")
    first = conversation.turns.get(index=0)
    finish(first)
    rate(first, [90, 10, 20, 30])
    collection.prism_conversation_start(user=surveyed, kind="unguided", text="Another")  # 4 waiting now
    with pytest.raises(replies.RateLimited, match="4 of your replies"):
        collection.prism_turn_send(conversation=conversation, text="More")  # 2 more would make 6
    assert conversation.turns.count() == 1


def test_retry_counts(surveyed, enqueued, fresh_budget, monkeypatch):
    monkeypatch.setattr(replies, "reply_enqueue", lambda *, reply_id: True)
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Hi")
    fresh_budget.GENERATION_MAX_PENDING = 3
    failed = conversation.turns.get(index=0).replies.first()
    Reply.objects.filter(pk=failed.pk).update(status=Reply.Status.FAILED)
    failed.refresh_from_db()
    with pytest.raises(replies.RateLimited):
        replies.reply_retry(reply=failed)  # 3 others still wait: a fourth would pass the limit of 3
    fresh_budget.GENERATION_MAX_PENDING = 4
    assert replies.reply_retry(reply=failed).status == Reply.Status.QUEUED


def test_the_synthetic_population_writes_its_own_replies_and_spends_no_budget(surveyed, fresh_budget):
    fresh_budget.GENERATION_MAX_PENDING = 1
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Hi", enqueue=False)
    assert conversation.turns.get(index=0).replies.count() == 4

