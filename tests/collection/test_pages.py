"""Every page of the collection with the four personas: anonymous, owner, another participant, staff."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests.collection.conftest import PERF, finish, survey_answers
from tests.collection.test_prism_io import CONVERSATION, SURVEY, UTTERANCE
from users.collection import services as collection
from users.models import Conversation, Profile, Reply
from users.survey.services import survey_save

POST_VIEWS = ["collect_rate", "collect_send", "collect_end"]


@pytest.fixture
def open_conversation(surveyed, enqueued):
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Opening question")
    finish(conversation.turns.get())
    return conversation


def lines(response) -> list[dict]:
    return [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]


def test_an_anonymous_visitor_is_sent_to_log_in_everywhere(client, open_conversation):
    cid = open_conversation.pk
    urls = [reverse("survey"), reverse("collect_home"), reverse("collect_detail", args=[cid]),
            reverse("data_export", args=["pairs"]), reverse("data_export", args=["survey"])]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url
    for name in ["collect_start", *POST_VIEWS]:
        url = reverse(name) if name == "collect_start" else reverse(name, args=[cid])
        assert client.post(url).status_code == 302, name
    for url in (reverse("dataset"), reverse("dataset_import")):
        assert client.get(url).status_code == 302


@pytest.mark.parametrize("name", ["collect_start", *POST_VIEWS])
def test_post_views_refuse_get(owner_client, open_conversation, name):
    url = reverse(name) if name == "collect_start" else reverse(name, args=[open_conversation.pk])
    assert owner_client.get(url).status_code == 405


@pytest.mark.parametrize("name", POST_VIEWS)
def test_another_participant_cannot_post_to_the_conversation(client, outsider, open_conversation, name):
    client.force_login(outsider)
    assert client.post(reverse(name, args=[open_conversation.pk]), {"message": "x"}).status_code == 404
    assert not Reply.objects.filter(score__isnull=False).exists()
    assert open_conversation.turns.count() == 1


@pytest.mark.parametrize("name", POST_VIEWS)
def test_staff_read_but_cannot_post_to_someone_elses_conversation(client, staff, open_conversation, name):
    client.force_login(staff)
    assert client.get(reverse("collect_detail", args=[open_conversation.pk])).status_code == 200
    assert client.post(reverse(name, args=[open_conversation.pk]), {"message": "x"}).status_code == 404


def test_another_participant_gets_404_for_the_conversation(client, outsider, open_conversation):
    client.force_login(outsider)
    assert client.get(reverse("collect_detail", args=[open_conversation.pk])).status_code == 404


def test_the_survey_page_shows_only_the_own_answers(client, surveyed, outsider):
    client.force_login(outsider)
    page = client.get(reverse("survey")).content.decode()
    assert "honesty and kindness" not in page
    client.force_login(surveyed)
    assert "honesty and kindness" in client.get(reverse("survey")).content.decode()


def test_the_survey_uses_prisms_wording(owner_client):
    page = owner_client.get(reverse("survey")).content.decode()
    assert "It is important that an AI language model..." in page
    assert "...produces factual and informative responses" in page
    assert "Strongly Disagree" in page and "Strongly Agree" in page


def test_the_collection_asks_for_the_survey_first(owner_client):
    response = owner_client.get(reverse("collect_home"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("survey"))


def test_filling_the_survey_lets_the_participant_start(owner_client, owner, enqueued, sources):
    form = {f"pref_{d}": 70 for d in survey_answers()["stated_prefs"]}
    form.update(lm_familiarity="Very familiar", self_description="I like clear answers.", reside_country="Kenya")
    response = owner_client.post(reverse("survey") + "?next=/collect/", form)
    assert response.status_code == 302 and response["Location"] == "/collect/"
    profile = Profile.objects.get(user=owner)
    assert profile.stated_prefs["safety"] == 70 and profile.location == {"reside_country": "Kenya"}
    response = owner_client.post(reverse("collect_start"), {"kind": "unguided", "message": "Hello there"})
    conversation = Conversation.objects.get(user=owner)
    assert response["Location"] == reverse("collect_detail", args=[conversation.pk])
    assert conversation.turns.get().replies.count() == 4


def test_the_survey_refuses_an_unsafe_next_address(owner_client):
    form = {f"pref_{d}": 70 for d in survey_answers()["stated_prefs"]}
    form.update(lm_familiarity="Very familiar", self_description="x")
    response = owner_client.post(reverse("survey") + "?next=https://evil.example/", form)
    assert response["Location"] == reverse("collect_home")


def test_the_page_never_names_the_sources(client, surveyed, open_conversation):
    client.force_login(surveyed)
    page = client.get(reverse("collect_detail", args=[open_conversation.pk])).content.decode()
    for source in Reply.objects.values_list("source", flat=True):
        assert source not in page
    assert page.count('type="range"') == 4


def test_rating_through_the_page_picks_the_highest(client, surveyed, open_conversation):
    client.force_login(surveyed)
    replies = list(open_conversation.turns.get().replies.order_by("position"))
    form = {f"score-{r.pk}": s for r, s in zip(replies, [20, 30, 95, 40])}
    response = client.post(reverse("collect_rate", args=[open_conversation.pk]), form)
    assert response.status_code == 302
    assert Reply.objects.get(chosen=True).pk == replies[2].pk


def test_a_tie_on_the_page_asks_which_continues(client, surveyed, open_conversation):
    client.force_login(surveyed)
    replies = list(open_conversation.turns.get().replies.order_by("position"))
    form = {f"score-{r.pk}": s for r, s in zip(replies, [90, 30, 90, 40])}
    response = client.post(reverse("collect_rate", args=[open_conversation.pk]), form)
    assert response.status_code == 422
    page = response.content.decode()
    assert page.count('name="pick"') == 2 and 'value="90"' in page
    response = client.post(reverse("collect_rate", args=[open_conversation.pk]), {**form, "pick": replies[2].pk})
    assert response.status_code == 302 and Reply.objects.get(chosen=True).pk == replies[2].pk


def test_ending_through_the_page_counts_towards_the_target(client, surveyed, open_conversation):
    client.force_login(surveyed)
    replies = list(open_conversation.turns.get().replies.order_by("position"))
    client.post(reverse("collect_rate", args=[open_conversation.pk]), {f"score-{r.pk}": 10 + i for i, r in enumerate(replies)})
    form = {f"performance_{d}": 80 for d in PERF} | {f"choice_{d}": 40 for d in PERF} | {"open_feedback": "Good"}
    assert client.post(reverse("collect_end", args=[open_conversation.pk]), form).status_code == 302
    home = client.get(reverse("collect_home"))
    assert home.context["progress"] == {"done": 1, "target": 6, "percent": 17}
    assert "1 of 6 conversations done" in home.content.decode()


def test_a_participant_exports_only_their_own_data(client, rated_conversation, outsider, enqueued):
    survey_save(user=outsider, **survey_answers(self_description="Mallory's secret"))
    client.force_login(outsider)
    for name in ("pairs", "conversations", "utterances"):
        assert lines(client.get(reverse("data_export", args=[name]))) == [], name
    survey = lines(client.get(reverse("data_export", args=["survey"])))
    assert [s["user_id"] for s in survey] == ["web-mallory"]
    assert [p["user_id"] for p in lines(client.get(reverse("data_export", args=["pairs"]) + "?user=alice"))] == []


def test_the_owner_exports_their_pairs(client, rated_conversation, surveyed):
    client.force_login(surveyed)
    pairs = lines(client.get(reverse("data_export", args=["pairs"])))
    assert len(pairs) == 3 and {p["user_id"] for p in pairs} == {"web-alice"}
    assert len(lines(client.get(reverse("data_export", args=["pairs"]) + "?min_margin=50"))) == 2


def test_staff_export_everyones_data_or_one_persons(client, rated_conversation, staff):
    client.force_login(staff)
    assert len(lines(client.get(reverse("data_export", args=["pairs"])))) == 3
    assert len(lines(client.get(reverse("data_export", args=["pairs"]) + "?user=alice&min_margin=50"))) == 2
    assert lines(client.get(reverse("data_export", args=["pairs"]) + "?user=nobody")) == []
    assert len(lines(client.get(reverse("data_export", args=["utterances"])))) == 8


def test_an_unknown_export_is_404(owner_client):
    assert owner_client.get(reverse("data_export", args=["passwords"])).status_code == 404


def test_participants_cannot_open_the_dataset_pages(client, owner):
    client.force_login(owner)
    for url in (reverse("dataset"), reverse("dataset_import")):
        response = client.get(url)
        assert response.status_code == 403 and "This page is for the study's staff" in response.content.decode()
    upload = SimpleUploadedFile("survey.jsonl", json.dumps(SURVEY).encode())
    client.post(reverse("dataset_import"), {"survey": upload})
    assert not Profile.objects.filter(prism_user_id="user7").exists()


def test_the_dataset_page_counts_and_stays_at_a_fixed_number_of_queries(client, staff, rated_conversation,
                                                                       django_assert_max_num_queries):
    client.force_login(staff)
    with django_assert_max_num_queries(12):
        response = client.get(reverse("dataset"))
    assert response.context["counts"] == {"people": 1, "withdrawn": 0, "conversations": 1, "rated_replies": 8, "pairs": 3}
    assert [r["pairs"] for r in response.context["people"]] == [3]
    bands = {b["label"]: b["count"] for b in response.context["histogram"]}
    assert (bands["71–80"], bands["61–70"], bands["1–10"], bands["91–100"]) == (2, 1, 1, 0)
    for i in range(30):  # more people: the same number of queries
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create(username=f"p{i}")
        survey_save(user=user, **survey_answers())
    with django_assert_max_num_queries(12):
        response = client.get(reverse("dataset"))
    assert len(response.context["people"]) == 31
    assert client.get(reverse("dataset") + "?min_margin=50").context["counts"]["pairs"] == 2


def test_staff_import_prism_files_through_the_upload_page(client, staff):
    client.force_login(staff)
    files = {"survey": SimpleUploadedFile("survey.jsonl", (json.dumps(SURVEY) + "\n").encode()),
             "conversations": SimpleUploadedFile("conversations.jsonl", (json.dumps(CONVERSATION) + "\n").encode()),
             "utterances": SimpleUploadedFile("utterances.jsonl", (json.dumps(UTTERANCE) + "\n").encode())}
    response = client.post(reverse("dataset_import"), files)
    assert response.status_code == 302
    assert Reply.objects.filter(turn__conversation__prism_id="c7").count() == 5


def test_a_refused_upload_names_file_line_and_field(client, staff):
    client.force_login(staff)
    bad = dict(SURVEY)
    del bad["user_id"]
    upload = SimpleUploadedFile("my-survey.jsonl", (json.dumps(SURVEY) + "\n" + json.dumps(bad) + "\n").encode())
    response = client.post(reverse("dataset_import"), {"survey": upload})
    assert response.status_code == 422
    assert "my-survey.jsonl, line 2, field user_id" in response.content.decode()
    assert not Profile.objects.exists()


def test_an_empty_upload_is_refused_by_the_importer(client, staff):
    client.force_login(staff)
    response = client.post(reverse("dataset_import"), {"survey": SimpleUploadedFile("survey.jsonl", b"")})
    assert response.status_code == 422 and "the file is empty (0 bytes)" in response.content.decode()


def test_ratings_cannot_be_saved_while_replies_are_still_being_written(client, surveyed, enqueued):
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Opening question")
    client.force_login(surveyed)
    url = reverse("collect_detail", args=[conversation.pk])
    page = client.get(url).content.decode()
    assert 'id="rate-submit" disabled' in page and 'id="rate-wait">' in page
    finish(conversation.turns.get(index=0))
    page = client.get(url).content.decode()
    assert 'id="rate-submit">' in page and 'id="rate-wait" hidden' in page
