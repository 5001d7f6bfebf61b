"""The blind comparisons an evaluation leaves on a person's compare page: the four replies in an order drawn per
comparison (seeded, so a rerun shows the same), and nothing on the page says which model wrote which."""

import re

import pytest
from django.urls import reverse

from trainer.worker.personalization import Planned, _blind_comparison
from users.chat import services as chat
from users.chat.selectors import COMPARE_LABELS
from users.models import Conversation, Reply, Turn

pytestmark = pytest.mark.django_db

WRITTEN = {"own": "Reply by the own vectors.", "generic": "Reply by the generic vectors.",
           "baseline": "Reply by the plain-DPO baseline.", "base": "Reply by the base model."}


def shown_order(conversation) -> tuple[str, ...]:
    return tuple(r.source for r in conversation.turns.get().replies.all())  # the page's order: by position


def test_each_comparison_draws_its_own_order_and_the_same_seed_draws_the_same(owner):
    orders = []
    for seed in range(12):
        item = Planned(owner.pk, "web-alice", [{"role": "user", "content": f"Question {seed}?"}], seed, None,
                       dict(WRITTEN))
        first = shown_order(_blind_comparison(item, Conversation, Turn, Reply))
        assert shown_order(_blind_comparison(item, Conversation, Turn, Reply)) == first
        orders.append(first)
    assert {order.index("compare-personal") for order in orders} == {0, 1, 2, 3}  # the own reply in every place
    assert len(set(orders)) >= 6


def test_the_page_shows_them_in_that_order_unlabelled_until_rated(client, owner):
    item = Planned(owner.pk, "web-alice", [{"role": "user", "content": "Which tea?"}], 5, None, dict(WRITTEN))
    conversation = _blind_comparison(item, Conversation, Turn, Reply)
    order = shown_order(conversation)
    client.force_login(owner)
    page = client.get(reverse("compare_detail", args=[conversation.pk])).content.decode()
    texts = {f"compare-{'personal' if k == 'own' else k}": v for k, v in WRITTEN.items()}
    places = [page.index(texts[source]) for source in order]
    assert places == sorted(places)
    assert 'class="reveal"' not in page

    replies = conversation.turns.get().replies.all()
    chat.compare_rate(turn=conversation.turns.get(), scores={r.pk: 10 + 20 * r.position for r in replies})
    page = client.get(reverse("compare_detail", args=[conversation.pk])).content.decode()
    assert re.findall(r'<span class="reveal">([^<]+)</span>', page) == [COMPARE_LABELS[s] for s in order]
