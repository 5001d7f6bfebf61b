import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.services import free_port
from users.chat import services
from users.models import Conversation, Reply


@pytest.fixture
def conversation(owner):
    return services.conversation_create(user=owner)


@pytest.fixture
def queued_reply(conversation, test_redis):
    return services.chat_send(conversation=conversation, text="Hello")


@pytest.fixture
def broker_down(settings):
    """Redis is stopped, as far as this process can tell: nothing listens on the broker's port."""
    from alignment_site.celery import app

    dead = f"redis://127.0.0.1:{free_port()}/0"
    saved = app.conf.broker_url
    app.conf.broker_url = dead
    app._pool = None
    app.amqp._producer_pool = None
    settings.REDIS_URL = dead
    yield dead
    app.conf.broker_url = saved
    app._pool = None
    app.amqp._producer_pool = None


def test_an_anonymous_visitor_is_sent_to_log_in(client, conversation):
    for url in (reverse("chat_list"), reverse("chat_detail", args=[conversation.pk])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_signing_up_logs_the_new_person_in(client, db):
    response = client.post(reverse("signup"), {"username": "newbie", "password1": "a-long-pass-phrase",
                                               "password2": "a-long-pass-phrase"})
    assert response.status_code == 302
    assert client.get(reverse("home")).context["user"].username == "newbie"


def test_signup_refuses_names_kept_for_imported_participants(client, db):
    from users.models import Profile

    Profile.objects.create(user=get_user_model().objects.create_user("prism-web-bob"), prism_user_id="web-bob")
    for name, reason in (("prism-user5", "kept for imported PRISM participants"), ("bob", "taken by an imported")):
        response = client.post(reverse("signup"), {"username": name, "password1": "a-long-pass-phrase",
                                                   "password2": "a-long-pass-phrase"})
        assert response.status_code == 200 and reason in response.content.decode()
        assert not get_user_model().objects.filter(username=name).exists()


def test_logging_out_needs_a_post(owner_client):
    assert owner_client.get(reverse("logout")).status_code == 405
    assert owner_client.post(reverse("logout")).status_code == 302
    assert owner_client.get(reverse("chat_list")).status_code == 302
    assert 'id="welcome-steps"' in owner_client.get(reverse("home")).content.decode()  # a visitor's home page


def test_a_participant_sees_only_their_own_conversations(client, owner, outsider, conversation):
    services.conversation_create(user=outsider)
    client.force_login(owner)
    assert [c.pk for c in client.get(reverse("chat_list")).context["conversations"]] == [conversation.pk]


def test_another_persons_conversation_is_not_found(client, outsider, conversation):
    client.force_login(outsider)
    assert client.get(reverse("chat_detail", args=[conversation.pk])).status_code == 404
    assert client.post(reverse("chat_send", args=[conversation.pk]), {"message": "hi"}).status_code == 404
    assert not conversation.turns.exists()


def test_the_conversation_page_query_count_does_not_grow_with_turns(owner_client, conversation, test_redis,
                                                                   django_assert_max_num_queries):
    for text in ("one", "two", "three", "four"):
        services.chat_send(conversation=conversation, text=text)
    with django_assert_max_num_queries(7):
        response = owner_client.get(reverse("chat_detail", args=[conversation.pk]))
    assert response.content.decode().count('class="turn"') == 4


def test_sending_stores_the_message_and_queues_a_reply(owner_client, conversation, test_redis,
                                                       django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = owner_client.post(reverse("chat_send", args=[conversation.pk]), {"message": " Hello "},
                                     headers={"HX-Request": "true"})
    assert len(callbacks) == 1  # published after the commit, not before
    assert response.status_code == 200
    reply = Reply.objects.get(turn__conversation=conversation)
    assert (reply.turn.user_message, reply.status) == ("Hello", Reply.Status.QUEUED)
    assert f'sse-connect="/replies/{reply.pk}/stream/"' in response.content.decode()


@pytest.mark.parametrize("message, expected", [
    ("   ", "empty message cannot be sent"),
    ("x" * 41, "41 characters long; the limit is 40"),
])
def test_an_empty_or_overlong_message_is_refused_with_a_reason(owner_client, conversation, settings,
                                                              message, expected):
    settings.CHAT_MAX_MESSAGE_CHARS = 40
    response = owner_client.post(reverse("chat_send", args=[conversation.pk]), {"message": message})
    assert response.status_code == 422
    assert expected in response.content.decode()
    assert not conversation.turns.exists()


@pytest.mark.django_db(transaction=True)  # on_commit runs as in production, before the page renders
def test_with_redis_down_the_message_is_kept_and_the_page_says_so(owner_client, conversation, broker_down):
    response = owner_client.post(reverse("chat_send", args=[conversation.pk]), {"message": "Still there?"},
                                 headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "The message broker (Redis) is not reachable" in response.content.decode()
    reply = Reply.objects.get(turn__conversation=conversation)
    assert reply.turn.user_message == "Still there?"
    assert reply.status == Reply.Status.FAILED
    page = owner_client.get(reverse("chat_detail", args=[conversation.pk])).content.decode()
    assert "Still there?" in page and "Retry" in page


def test_retry_puts_a_failed_reply_back_in_the_queue(owner_client, conversation, test_redis,
                                                     django_capture_on_commit_callbacks):
    reply = services.chat_send(conversation=conversation, text="again")
    Reply.objects.filter(pk=reply.pk).update(status=Reply.Status.FAILED, error="boom")
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(reverse("reply_retry", args=[reply.pk]))
    assert response.status_code == 302
    reply.refresh_from_db()
    assert (reply.status, reply.error) == (Reply.Status.QUEUED, "")


def test_stopping_a_queued_reply_stops_it_at_once(owner_client, queued_reply):
    assert owner_client.post(reverse("reply_stop", args=[queued_reply.pk])).status_code == 204
    queued_reply.refresh_from_db()
    assert queued_reply.status == Reply.Status.STOPPED


@pytest.mark.parametrize("name", ["reply_stop", "reply_retry", "chat_send", "chat_rename", "chat_delete"])
def test_post_views_refuse_get(owner_client, queued_reply, name):
    conversation = queued_reply.turn.conversation_id
    arg = [conversation] if name.startswith("chat_") else [queued_reply.pk]
    assert owner_client.get(reverse(name, args=arg)).status_code == 405


def test_a_typed_new_chat_address_answers_with_the_list_and_creates_nothing(owner_client, owner):
    from users.models import Conversation

    before = Conversation.objects.filter(user=owner).count()
    assert owner_client.get(reverse("chat_new")).url == reverse("chat_list")
    assert Conversation.objects.filter(user=owner).count() == before


@pytest.mark.parametrize("name", ["reply_stop", "reply_retry", "reply_stream"])
def test_an_outsider_cannot_touch_another_persons_reply(client, outsider, queued_reply, name):
    client.force_login(outsider)
    method = client.get if name == "reply_stream" else client.post
    assert method(reverse(name, args=[queued_reply.pk])).status_code == 404
    queued_reply.refresh_from_db()
    assert queued_reply.status == Reply.Status.QUEUED


def test_an_anonymous_visitor_cannot_follow_a_stream(client, queued_reply):
    assert client.get(reverse("reply_stream", args=[queued_reply.pk])).status_code == 403


def test_csrf_is_enforced_on_sending(owner, conversation):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner)
    assert strict.post(reverse("chat_send", args=[conversation.pk]), {"message": "hi"}).status_code == 403


def test_conversations_are_removed_with_their_owner(owner, conversation):
    owner.delete()
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
