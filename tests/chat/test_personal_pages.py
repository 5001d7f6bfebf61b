"""Personalized chat pages and services: vectors notice, blind comparisons,
quick ratings and rewrites, fast-fit triggering, limits and access."""

import json
import random

import pytest
from django.urls import reverse

from tests.factories import person
from users.chat import services as personal
from users.collection.pairs import preference_pairs
from users.models import Conversation, Reply, Turn, VectorFit
from users.prism.writer import prism_export_lines

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}  # what the chat page's hx-get sends


@pytest.fixture
def sent(monkeypatch):
    """Tasks published, instead of a broker."""
    calls = []
    monkeypatch.setattr("alignment_site.dispatch.send", lambda name, *args, queue: calls.append((name, args, queue)))
    return calls


@pytest.fixture(autouse=True)
def no_rate_limit(settings, test_redis):
    settings.CHAT_RATE_PER_MINUTE = 0
    settings.GENERATION_MAX_PENDING = 1000  # replies here are never finished by a worker


def chat_reply(user, text="Hi", content="Hello there.", source="personal"):
    conversation = Conversation.objects.create(user=user)
    turn = Turn.objects.create(conversation=conversation, index=0, user_message=text)
    return Reply.objects.create(turn=turn, source=source, status=Reply.Status.DONE, content=content, chosen=True)


def finished_compare(user, rng_seed=0):
    conversation = personal.compare_start(user=user, text="How do I cook rice?", rng=random.Random(rng_seed))
    turn = conversation.turns.get()
    for reply in turn.replies.all():
        Reply.objects.filter(pk=reply.pk).update(status=Reply.Status.DONE, content=f"text of {reply.source}")
    return conversation, turn


def test_the_chat_status_tells_a_new_user_they_get_the_generic_vectors_and_how_many_ratings_to_go(
        client, outsider, active_run, settings):
    settings.FASTFIT_EVERY_PAIRS = 5
    client.force_login(outsider)
    conversation = Conversation.objects.create(user=outsider)
    assert 'hx-get="/me/panel/"' in client.get(reverse("chat_detail", args=[conversation.pk])).content.decode()
    html = client.get(reverse("personal_panel"), headers=HTMX).content.decode()
    assert "<strong>generic</strong> vectors" in html
    assert "5 more ratings" in html


def test_the_chat_status_tells_a_trained_user_they_have_their_own_vectors(owner_client, owner, active_run):
    html = owner_client.get(reverse("personal_panel"), headers=HTMX).content.decode()
    assert f"version {active_run.pk} with your own vectors from training" in html
    assert "0.75 on 4 pairs" in html  # held-out accuracy from run.evaluation.per_user
    assert "Nearest people: 0.224 away" in html  # the nearest neighbour on the user map, by distance only


def test_a_participant_sees_their_own_point_and_nobody_elses_name(owner_client, owner, active_run):
    html = owner_client.get(reverse("personal_panel"), headers=HTMX).content.decode()
    assert "<title>you</title>" in html and html.count("<circle") == 4
    for other in ("web-sim-a", "web-sim-b", "sim-a", "sim-b", "(generic)"):
        assert other not in html


def test_a_participant_outside_the_run_sees_anonymous_points_only(client, outsider, active_run):
    client.force_login(outsider)
    html = client.get(reverse("personal_panel"), headers=HTMX).content.decode()
    assert html.count("<circle") == 4 and "<title>" not in html and "web-alice" not in html
    assert "You are not on this version's map" in html


def test_staff_keep_the_named_map(client, staff, active_run):
    client.force_login(staff)
    html = client.get(reverse("personal_panel"), headers=HTMX).content.decode()
    assert all(f"<title>{name}</title>" in html for name in ("web-alice", "web-sim-a", "web-sim-b"))


def test_the_chat_status_says_the_base_model_answers_when_no_version_is_active(owner_client, owner):
    html = owner_client.get(reverse("personal_panel"), headers=HTMX).content.decode()
    assert "No trained version is active yet" in html


def test_chat_messages_ask_for_the_personal_source(owner_client, owner, sent, django_capture_on_commit_callbacks):
    conversation = Conversation.objects.create(user=owner)
    with django_capture_on_commit_callbacks(execute=True):
        owner_client.post(reverse("chat_send", args=[conversation.pk]), {"message": "Hello"})
    assert conversation.turns.get().replies.get().source == "personal"
    assert sent[0][0] == "trainer.generate_reply"


def test_a_comparison_asks_for_three_replies_in_a_random_order(owner, active_run, sent,
                                                               django_capture_on_commit_callbacks):
    orders = set()
    for seed in range(6):
        with django_capture_on_commit_callbacks(execute=True):
            conversation = personal.compare_start(user=owner, text="Why is the sky blue?", rng=random.Random(seed))
        replies = conversation.turns.get().replies.order_by("position")
        orders.add(tuple(r.source for r in replies))
    assert all(set(o) == {"compare-personal", "compare-generic", "compare-base"} for o in orders)
    assert len(orders) > 1
    assert len(sent) == 18 and {q for _, _, q in sent} == {"generate"}


def test_a_comparison_needs_an_active_version(owner_client, owner):
    response = owner_client.post(reverse("compare_start"), {"message": "Hi"})
    assert response.status_code == 422
    assert "No model version is active yet" in response.content.decode()


def test_the_comparison_page_hides_the_sources_until_rated(owner_client, owner, active_run):
    conversation, turn = finished_compare(owner)
    html = owner_client.get(reverse("compare_detail", args=[conversation.pk])).content.decode()
    assert 'class="reveal"' not in html and "Base model" not in html
    scores = {f"score-{r.pk}": s for r, s in zip(turn.replies.order_by("position"), (80, 40, 20))}
    response = owner_client.post(reverse("compare_rate", args=[conversation.pk]), scores)
    assert response.status_code == 302
    html = owner_client.get(reverse("compare_detail", args=[conversation.pk])).content.decode()
    revealed = {'<span class="reveal">Your vectors</span>', '<span class="reveal">Generic vectors</span>',
                '<span class="reveal">Base model</span>'}
    assert all(label in html for label in revealed)


def test_comparison_ratings_become_pairs_and_enter_the_prism_export(owner_client, owner, active_run):
    conversation, turn = finished_compare(owner)
    replies = list(turn.replies.order_by("position"))
    owner_client.post(reverse("compare_rate", args=[conversation.pk]),
                      {f"score-{r.pk}": s for r, s in zip(replies, (90, 30, 60))})
    pairs = list(preference_pairs(users=[owner]))
    assert len(pairs) == 2
    assert {p["chosen"][0]["content"] for p in pairs} == {replies[0].content}
    exported = [json.loads(line) for line in prism_export_lines(file="conversations", users=[owner])]
    assert exported[0]["conversation_type"] == "compare"
    assert [e["score"] for e in exported[0]["conversation_history"] if e["role"] == "model"] == [90, 30, 60]


def test_a_rewrite_makes_a_pair_of_the_rewrite_over_the_reply(owner_client, owner):
    reply = chat_reply(owner)
    response = owner_client.post(reverse("reply_rate", args=[reply.pk]),
                                 {"score": 35, "rewrite": "Hi! How can I help?"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "You rated this 35/100" in response.content.decode()
    [pair] = list(preference_pairs(users=[owner]))
    assert pair["chosen"][0]["content"] == "Hi! How can I help?"
    assert pair["rejected"][0]["content"] == "Hello there."


def test_a_quick_rating_without_a_rewrite_stores_the_score_and_makes_no_pair(owner_client, owner):
    reply = chat_reply(owner)
    owner_client.post(reverse("reply_rate", args=[reply.pk]), {"score": 70})
    reply.refresh_from_db()
    assert reply.score == 70 and reply.chosen
    assert list(preference_pairs(users=[owner])) == []


def test_a_refit_is_queued_on_the_train_queue_after_the_configured_number_of_new_pairs(
        owner, active_run, settings, sent, django_capture_on_commit_callbacks):
    settings.FASTFIT_EVERY_PAIRS = 3
    with django_capture_on_commit_callbacks(execute=True):
        conversation, turn = finished_compare(owner)
        personal.compare_rate(turn=turn, scores={r.pk: s for r, s in zip(turn.replies.all(), (90, 30, 60))})
    assert not VectorFit.objects.exists()  # 2 pairs < 3
    reply = chat_reply(owner)
    with django_capture_on_commit_callbacks(execute=True):
        fit = personal.reply_quick_rate(reply=reply, score=20, rewrite="Better text.")
    assert fit is not None and fit.pairs_total == 3 and fit.run == active_run
    assert ("trainer.fast_fit", (fit.pk,), "train") in sent


def test_no_second_refit_is_queued_while_one_is_pending(owner, active_run, settings, sent,
                                                        django_capture_on_commit_callbacks):
    settings.FASTFIT_EVERY_PAIRS = 1
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            personal.reply_quick_rate(reply=chat_reply(owner), score=20, rewrite="Better text.")
    assert VectorFit.objects.filter(user=owner).count() == 1


def test_too_many_messages_in_a_minute_are_refused_with_a_clear_message(owner_client, owner, settings, sent,
                                                                        test_redis):
    settings.CHAT_RATE_PER_MINUTE = 2
    test_redis.delete(*test_redis.keys(f"ratelimit:{owner.pk}:*") or ["none"])
    conversation = Conversation.objects.create(user=owner)
    url = reverse("chat_send", args=[conversation.pk])
    assert owner_client.post(url, {"message": "one"}).status_code == 302
    assert owner_client.post(url, {"message": "two"}).status_code == 302
    response = owner_client.post(url, {"message": "three"})
    assert response.status_code == 422
    assert "You have sent 2 messages in the last minute" in response.content.decode()


def test_an_overlong_prompt_is_refused_with_its_length_and_the_limit(owner_client, owner, settings, active_run):
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    response = owner_client.post(reverse("compare_start"), {"message": "x" * 11})
    assert response.status_code == 422
    assert "the limit is 10" in response.content.decode()


@pytest.mark.parametrize("name", ["compare_rate", "reply_rate"])
def test_rating_views_refuse_get(owner_client, owner, active_run, name):
    target = finished_compare(owner)[0].pk if name == "compare_rate" else chat_reply(owner).pk
    assert owner_client.get(reverse(name, args=[target])).status_code == 405


def test_compare_start_refuses_get(owner_client):
    assert owner_client.get(reverse("compare_start")).status_code == 405


def test_compare_start_refuses_anonymous(client):
    response = client.post(reverse("compare_start"), {"message": "Hi"})
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_an_outsider_cannot_rate_or_read_someone_elses_comparison(client, owner, outsider, active_run):
    conversation, turn = finished_compare(owner)
    client.force_login(outsider)
    assert client.get(reverse("compare_detail", args=[conversation.pk])).status_code == 404
    scores = {f"score-{r.pk}": 50 for r in turn.replies.all()}
    assert client.post(reverse("compare_rate", args=[conversation.pk]), scores).status_code == 404
    assert not Reply.objects.filter(turn=turn, score__isnull=False).exists()


def test_an_outsider_cannot_rate_someone_elses_reply_nor_trigger_their_refit(client, owner, outsider, active_run,
                                                                            settings):
    settings.FASTFIT_EVERY_PAIRS = 1
    reply = chat_reply(owner)
    client.force_login(outsider)
    assert client.post(reverse("reply_rate", args=[reply.pk]), {"score": 10, "rewrite": "x"}).status_code == 404
    assert not VectorFit.objects.exists()
    assert Reply.objects.filter(turn=reply.turn).count() == 1


def test_the_panel_compares_the_style_of_personal_and_generic_replies(owner_client, owner, active_run):
    reply = chat_reply(owner, content="One. Two words here.")
    Reply.objects.filter(pk=reply.pk).update(serving={"version": active_run.pk, "vectors": "personal"})
    other = chat_reply(owner, content="A much longer generic reply with many more words in a single sentence.")
    Reply.objects.filter(pk=other.pk).update(serving={"version": active_run.pk, "vectors": "generic"})
    html = owner_client.get(reverse("personal_panel"), headers=HTMX).content.decode()
    assert "<td>yours</td><td>1</td><td>4.0</td>" in html
    assert "<td>generic</td><td>1</td><td>13.0</td>" in html


def test_a_done_refit_shows_updated_from_your_last_n_ratings(owner_client, owner, active_run):
    from django.utils import timezone

    VectorFit.objects.create(user=owner, run=active_run, status=VectorFit.Status.DONE, pairs_total=7, pairs_used=7,
                             path="x.safetensors", finished_at=timezone.now())
    html = owner_client.get(reverse("personal_panel"), headers=HTMX).content.decode()
    assert "Updated from your last 7 ratings" in html


def test_someone_elses_refit_does_not_change_my_vectors_notice(client, owner, active_run):
    from django.utils import timezone

    other = person("bob")
    VectorFit.objects.create(user=other, run=active_run, status=VectorFit.Status.DONE, pairs_total=7, pairs_used=7,
                             path="x.safetensors", finished_at=timezone.now())
    client.force_login(owner)
    html = client.get(reverse("personal_panel"), headers=HTMX).content.decode()
    assert "Updated from your last" not in html


def test_new_chat_reuses_an_empty_one_and_answers_a_get_with_a_page(owner_client, owner):
    from users.models import Conversation

    first = owner_client.post(reverse("chat_new"))
    again = owner_client.post(reverse("chat_new"))
    assert first.url == again.url and Conversation.objects.filter(user=owner, kind="chat").count() == 1
    assert owner_client.get(reverse("chat_new")).url == reverse("chat_list")
    page = owner_client.get(reverse("personal_panel")).content.decode()  # the no-JavaScript link
    assert "<html" in page and "Which model answers you" in page and "Why it behaves so" not in page
    fragment = owner_client.get(reverse("personal_panel"), headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in fragment


def test_the_survey_preselects_no_answer(owner_client):
    page = owner_client.get(reverse("survey")).content.decode()
    assert '<option value="" selected>Choose one</option>' in page
    assert "Very familiar" in page and '"Very familiar" selected' not in page


def test_a_chat_is_renamed_and_deleted_by_its_owner_only(client, owner, outsider, monkeypatch):
    from users.collection.services import reply_complete

    monkeypatch.setattr(personal, "reply_enqueue", lambda *, reply_id: True)
    conversation = personal.conversation_create(user=owner)
    reply = personal.chat_send(conversation=conversation, text="Hi")
    client.force_login(outsider)
    assert client.post(reverse("chat_rename", args=[conversation.pk]), {"title": "mine"}).status_code == 404
    assert client.post(reverse("chat_delete", args=[conversation.pk]), {"confirm": "yes"}).status_code == 404
    client.force_login(owner)
    client.post(reverse("chat_rename", args=[conversation.pk]), {"title": "  Tea   questions "})
    conversation.refresh_from_db()
    assert conversation.title == "Tea questions"
    page = client.post(reverse("chat_delete", args=[conversation.pk]), {"confirm": "yes"}, follow=True)
    assert "still being written" in page.content.decode() and Conversation.objects.filter(pk=conversation.pk)
    reply_complete(reply=reply, content="Hello")
    page = client.post(reverse("chat_delete", args=[conversation.pk]), {}, follow=True)
    assert "Tick the box" in page.content.decode() and Conversation.objects.filter(pk=conversation.pk)
    page = client.post(reverse("chat_delete", args=[conversation.pk]), {"confirm": "yes"}, follow=True)
    assert "Deleted “Tea questions”" in page.content.decode()
    assert not Conversation.objects.filter(pk=conversation.pk) and not Reply.objects.filter(pk=reply.pk)


def test_the_newest_unrated_chat_reply_can_be_written_again(client, owner, monkeypatch,
                                                             django_capture_on_commit_callbacks):
    from users.collection.services import reply_complete

    sent = []
    monkeypatch.setattr(personal, "reply_enqueue", lambda *, reply_id: sent.append(reply_id) or True)
    monkeypatch.setattr("users.conversations.services.reply_enqueue",
                        lambda *, reply_id: sent.append(reply_id) or True)
    conversation = personal.conversation_create(user=owner)
    first = personal.chat_send(conversation=conversation, text="Tea?")
    reply_complete(reply=first, content="Green tea.")
    client.force_login(owner)
    page = client.get(reverse("chat_detail", args=[conversation.pk])).content.decode()
    assert 'class="regenerate-form"' in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("reply_regenerate", args=[first.pk]))
    first.refresh_from_db()
    assert (first.status, first.content) == (Reply.Status.QUEUED, "") and sent[-1] == first.pk
    reply_complete(reply=first, content="Black tea.")
    second = personal.chat_send(conversation=conversation, text="Coffee?")
    reply_complete(reply=second, content="Espresso.")
    refused = client.post(reverse("reply_regenerate", args=[first.pk]), headers={"HX-Request": "true"})
    assert refused.status_code == 409 and "Only the newest reply" in refused.content.decode()
    Reply.objects.filter(pk=second.pk).update(score=80)
    refused = client.post(reverse("reply_regenerate", args=[second.pk]), headers={"HX-Request": "true"})
    assert refused.status_code == 409 and "You rated this reply" in refused.content.decode()
    assert Reply.objects.get(pk=second.pk).content == "Espresso."
