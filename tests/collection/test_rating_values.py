"""No value is stored that the person did not set: every slider starts unset, and a form that lacks one is
refused with what is missing named, whatever the client sends. And a candidate cut at the length limit can be
written on before it is rated."""

import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from tests.collection.conftest import PERF, finish, survey_answers
from users.collection import services as collection
from users.models import Profile, Reply
from users.survey.services import survey_save

RANGE = re.compile(r"<input type=\"range\"[^>]*>", re.S)


@pytest.fixture
def open_conversation(surveyed, enqueued):
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Opening question")
    finish(conversation.turns.get())
    return conversation


def sliders(html: str) -> list[str]:
    return RANGE.findall(html)


def test_a_rating_page_starts_with_every_reply_unrated(owner_client, open_conversation):
    page = owner_client.get(reverse("collect_detail", args=[open_conversation.pk])).content.decode()
    found = sliders(page)
    assert len(found) == 4
    for slider in found:  # no name: an untouched slider sends nothing
        assert " name=" not in slider and 'data-name="score-' in slider and 'class="unset"' in slider
        assert 'form="rate-form"' in slider
    assert page.count(">not set</output>") == 4


def test_each_replys_slider_sits_in_that_replys_card(owner_client, open_conversation):
    page = owner_client.get(reverse("collect_detail", args=[open_conversation.pk])).content.decode()
    for reply in open_conversation.turns.get().replies.all():
        card = page.split(f'id="candidate-{reply.pk}"', 1)[1].split('id="candidate-', 1)[0]
        assert f'id="reply-{reply.pk}"' in card and f'data-name="score-{reply.pk}"' in card


def test_saving_with_a_reply_unrated_is_refused_naming_it_and_keeps_the_others(owner_client, open_conversation):
    replies = list(open_conversation.turns.get().replies.order_by("position"))
    form = {f"score-{r.pk}": s for r, s in zip(replies[:3], [20, 77, 40])}  # Reply 4 left unset
    response = owner_client.post(reverse("collect_rate", args=[open_conversation.pk]), form)
    assert response.status_code == 422
    page = response.content.decode()
    assert "Reply 4 is not rated yet" in page
    assert not Reply.objects.filter(score__isnull=False).exists()
    kept = sliders(page)
    assert any(f'name="score-{replies[1].pk}"' in s and 'value="77"' in s for s in kept)
    assert any(f'data-name="score-{replies[3].pk}"' in s and " name=" not in s for s in kept)


def test_saving_with_nothing_rated_names_every_reply(owner_client, open_conversation):
    response = owner_client.post(reverse("collect_rate", args=[open_conversation.pk]), {})
    assert response.status_code == 422
    assert "Reply 1, Reply 2, Reply 3 and Reply 4 are not rated yet" in response.content.decode()


@pytest.mark.parametrize("sent", ["", "abc", "0", "101", "50.5"])
def test_a_value_that_is_no_rating_is_refused(owner_client, open_conversation, sent):
    replies = list(open_conversation.turns.get().replies.order_by("position"))
    form = {f"score-{r.pk}": 60 + i for i, r in enumerate(replies)} | {f"score-{replies[0].pk}": sent}
    response = owner_client.post(reverse("collect_rate", args=[open_conversation.pk]), form)
    assert response.status_code == 422 and "Reply 1 is not rated yet" in response.content.decode()
    assert not Reply.objects.filter(score__isnull=False).exists()


def test_the_service_refuses_a_turn_with_a_score_missing(open_conversation):
    turn = open_conversation.turns.get()
    replies = list(turn.replies.order_by("position"))
    with pytest.raises(ValidationError):
        collection.turn_rate(turn=turn, scores={r.pk: 50 for r in replies[:3]})
    assert not Reply.objects.filter(score__isnull=False).exists()


def test_the_survey_starts_unset_and_refuses_unset_preferences_naming_them(owner_client, owner):
    page = owner_client.get(reverse("survey")).content.decode()
    assert len(sliders(page)) == 8 and all(" name=" not in s for s in sliders(page))
    form = {"lm_familiarity": "Very familiar", "self_description": "I like clear answers.", "pref_safety": "90"}
    response = owner_client.post(reverse("survey"), form)
    assert response.status_code == 422
    page = response.content.decode()
    assert page.count("Not set yet") == 7  # the seven left unset, each under its own slider
    assert any('name="pref_safety"' in s and 'value="90"' in s for s in sliders(page))  # the one set is kept
    assert not Profile.objects.filter(user=owner, stated_prefs__safety=90).exists()


def test_the_survey_shows_saved_answers_as_set(owner_client, owner):
    survey_save(user=owner, **survey_answers())
    page = owner_client.get(reverse("survey")).content.decode()
    assert all('value="60"' in s and " name=" in s for s in sliders(page)) and len(sliders(page)) == 8


def test_the_end_form_refuses_unset_attributes_and_the_conversation_stays_open(owner_client, open_conversation):
    replies = list(open_conversation.turns.get().replies.order_by("position"))
    owner_client.post(reverse("collect_rate", args=[open_conversation.pk]),
                      {f"score-{r.pk}": 10 + i for i, r in enumerate(replies)})
    page = owner_client.get(reverse("collect_detail", args=[open_conversation.pk])).content.decode()
    end = page.split('class="end"', 1)[1]
    assert len(sliders(end)) == 2 * len(PERF) and all(" name=" not in s for s in sliders(end))
    form = {f"performance_{d}": 80 for d in PERF} | {"open_feedback": "Good"}  # the choice sliders unset
    response = owner_client.post(reverse("collect_end", args=[open_conversation.pk]), form)
    assert response.status_code == 422 and "Not set yet" in response.content.decode()
    open_conversation.refresh_from_db()
    assert open_conversation.ended_at is None and open_conversation.performance_attributes in (None, {})


def test_the_quick_rating_of_a_chat_reply_refuses_a_missing_score(owner_client, owner):
    from users.chat import services as chat

    conversation = chat.chat_open_empty(user=owner)
    from users.models import Turn

    turn = Turn.objects.create(conversation=conversation, index=0, user_message="Hi")
    reply = Reply.objects.create(turn=turn, source="base", status=Reply.Status.DONE, content="Hello!")
    response = owner_client.post(reverse("reply_rate", args=[reply.pk]), {"rewrite": ""}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422 and "Not rated yet" in response.content.decode()
    reply.refresh_from_db()
    assert reply.score is None


def cut(reply: Reply, text: str = "A long answer that stops mid") -> Reply:
    Reply.objects.filter(pk=reply.pk).update(status=Reply.Status.DONE, content=text, token_count=512,
                                             serving={"cut": True})
    reply.refresh_from_db()
    return reply


def test_a_cut_candidate_offers_continue_and_is_queued_again_with_its_text(owner_client, open_conversation, enqueued,
                                                                          django_capture_on_commit_callbacks):
    reply = cut(open_conversation.turns.get().replies.get(position=2))
    page = owner_client.get(reverse("collect_detail", args=[open_conversation.pk])).content.decode()
    assert page.count("Continue this reply") == 1 and reverse("collect_continue", args=[reply.pk]) in page
    enqueued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(reverse("collect_continue", args=[reply.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    reply.refresh_from_db()
    assert reply.status == Reply.Status.QUEUED and reply.content == "A long answer that stops mid"
    assert reply.serving["continue"] is True and enqueued == [reply.pk]


def test_a_rated_or_uncut_candidate_cannot_be_continued(owner_client, open_conversation, enqueued):
    turn = open_conversation.turns.get()
    whole = turn.replies.get(position=0)
    assert owner_client.post(reverse("collect_continue", args=[whole.pk])).status_code == 409
    reply = cut(turn.replies.get(position=1))
    replies = list(turn.replies.order_by("position"))
    collection.turn_rate(turn=turn, scores={r.pk: 10 + i for i, r in enumerate(replies)})
    enqueued.clear()
    assert owner_client.post(reverse("collect_continue", args=[reply.pk])).status_code == 409
    reply.refresh_from_db()
    assert reply.status == Reply.Status.DONE and enqueued == []


def test_continue_refuses_get_and_another_participant(client, owner_client, outsider, open_conversation, enqueued):
    reply = cut(open_conversation.turns.get().replies.get(position=0))
    assert owner_client.get(reverse("collect_continue", args=[reply.pk])).status_code == 405
    client.force_login(outsider)
    assert client.post(reverse("collect_continue", args=[reply.pk])).status_code == 404
    reply.refresh_from_db()
    assert reply.status == Reply.Status.DONE
