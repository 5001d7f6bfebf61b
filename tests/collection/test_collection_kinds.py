"""The collection's forms act only on collection conversations: a blind comparison or a chat of the same
person is not rated, sent to, ended or continued through them (its own page judges its ratings)."""

import pytest
from django.urls import reverse

from users.models import Conversation, Reply, Turn


@pytest.mark.parametrize("kind", [Conversation.Kind.COMPARE, Conversation.Kind.CHAT])
def test_the_collection_forms_refuse_a_conversation_of_another_kind(owner_client, owner, kind):
    conversation = Conversation.objects.create(user=owner, kind=kind)
    turn = Turn.objects.create(conversation=conversation, index=0, user_message="Which is better?")
    replies = [Reply.objects.create(turn=turn, position=i, status=Reply.Status.DONE, content=f"reply {i}",
                                    serving={"cut": True}) for i in range(3)]
    scores = {f"score-{r.pk}": 90 - 30 * i for i, r in enumerate(replies)}
    assert owner_client.post(reverse("collect_rate", args=[conversation.pk]), scores).status_code == 404
    assert owner_client.post(reverse("collect_send", args=[conversation.pk]), {"message": "more"}).status_code == 404
    assert owner_client.post(reverse("collect_end", args=[conversation.pk]), {}).status_code == 404
    assert owner_client.post(reverse("collect_continue", args=[replies[0].pk])).status_code == 404
    assert owner_client.get(reverse("collect_detail", args=[conversation.pk])).status_code == 404
    assert list(Reply.objects.filter(turn=turn).values_list("score", flat=True)) == [None, None, None]
    assert Turn.objects.filter(conversation=conversation).count() == 1
    conversation.refresh_from_db()
    assert conversation.ended_at is None
