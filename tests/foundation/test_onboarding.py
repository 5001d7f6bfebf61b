"""A new participant's way in: sign-up leads to the study's introduction and consent (text set by staff), the
survey waits for consent, and every participant page points to the next step until the conversations asked
for are done, then thanks them."""

import pytest
from django.urls import reverse

from users.accounts import onboarding
from users.models import Conversation, Profile, StudyText

pytestmark = pytest.mark.django_db


def test_sign_up_leads_to_the_study_and_the_survey_waits_for_consent(client):
    StudyText.objects.update_or_create(pk=1, defaults={"introduction": "We study **tea**.",
                                                       "consent": "Your ratings train models."})
    response = client.post(reverse("signup"), {"username": "newcomer", "password1": "a-long-pass-phrase",
                                               "password2": "a-long-pass-phrase"})
    assert response.url == reverse("study_intro")
    page = client.get(reverse("study_intro")).content.decode()
    assert "We study <strong>tea</strong>." in page and "Your ratings train models." in page
    assert client.get(reverse("survey")).url == reverse("study_intro")
    refused = client.post(reverse("study_intro"), {})
    assert refused.status_code == 422 and "Tick the box" in refused.content.decode()
    assert not Profile.objects.filter(user__username="newcomer").exists()
    assert client.post(reverse("study_intro"), {"agree": "yes"}).url == reverse("survey")
    assert Profile.objects.get(user__username="newcomer").consent == onboarding.CONSENT_GIVEN
    assert client.get(reverse("survey")).status_code == 200


def test_every_participant_page_points_to_the_next_step_then_thanks(client, settings, owner, monkeypatch):
    from tests.collection.conftest import survey_answers
    from users.survey.services import survey_save

    settings.COLLECTION_TARGET = 2
    client.force_login(owner)
    survey_page = reverse("survey")
    assert onboarding.next_step(owner).url == survey_page
    home = client.get(reverse("home")).content.decode()
    assert 'id="next-step"' in home and "Fill in your profile survey" in home
    assert 'id="next-step"' not in client.get(survey_page).content.decode()  # not on the page it points to
    survey_save(user=owner, **survey_answers())
    assert "Hold conversation 1 of 2" in client.get(reverse("chat_list")).content.decode()
    for kind in ("unguided", "values guided"):
        Conversation.objects.create(user=owner, kind=kind, ended_at="2026-01-01T00:00:00Z")
    page = client.get(reverse("home")).content.decode()
    assert "Thank you: you have finished all 2 conversations" in page and "Next:" not in page
    assert 'id="next-step"' not in client.get(reverse("chat_list")).content.decode()


def test_staff_see_no_pointer_and_the_collection_explains_its_kinds(client, staff, owner):
    client.force_login(staff)
    assert 'id="next-step"' not in client.get(reverse("run_list")).content.decode()
    client.force_login(owner)
    from tests.collection.conftest import survey_answers
    from users.survey.services import survey_save

    survey_save(user=owner, **survey_answers())
    page = client.get(reverse("collect_home")).content.decode()
    assert "Values guided: ask about something where your values" in page
    assert "Controversy guided: ask about a topic people disagree on" in page


def test_the_pointer_never_links_to_where_the_person_already_is(client, settings, owner, monkeypatch):
    from tests.collection.conftest import survey_answers
    from users.collection import services as collection
    from users.survey.services import survey_save

    monkeypatch.setattr(collection, "reply_enqueue", lambda *, reply_id: True)
    settings.GENERATION_MAX_PENDING = 1000
    survey_save(user=owner, **survey_answers())
    client.force_login(owner)
    collect_home = reverse("collect_home")
    assert f'<a href="{collect_home}">Hold conversation 1 of' in client.get(reverse("chat_list")).content.decode()
    refused = client.post(reverse("collect_start"), {"kind": "unguided", "message": ""})  # the start page again
    assert refused.status_code == 422 and 'id="next-step"' not in refused.content.decode()
    conversation = collection.prism_conversation_start(user=owner, kind="unguided", text="Hello?")
    page = client.get(reverse("collect_detail", args=[conversation.pk])).content.decode()
    assert 'id="next-step"' not in page  # holding that conversation is the step itself


def test_finishing_a_conversation_says_so_with_how_many_are_done(client, settings, owner, monkeypatch):
    from tests.collection.conftest import PERF, finish, survey_answers
    from users.collection import services as collection
    from users.survey.services import survey_save

    monkeypatch.setattr(collection, "reply_enqueue", lambda *, reply_id: True)
    settings.GENERATION_MAX_PENDING = 1000
    settings.COLLECTION_TARGET = 6
    survey_save(user=owner, **survey_answers())
    conversation = collection.prism_conversation_start(user=owner, kind="unguided", text="Hello?")
    turn = conversation.turns.get()
    finish(turn)
    collection.turn_rate(turn=turn, scores={r.pk: 10 + i for i, r in enumerate(turn.replies.all())}, pick=None)
    client.force_login(owner)
    form = {f"performance_{d}": 80 for d in PERF} | {f"choice_{d}": 40 for d in PERF} | {"open_feedback": ""}
    response = client.post(reverse("collect_end", args=[conversation.pk]), form, follow=True)
    assert response.redirect_chain[-1][0] == reverse("collect_home")
    flash = response.content.decode().split('class="flash success"')[1].split("</p>")[0]
    assert "Conversation finished — thank you. 1 of 6 done." in flash
