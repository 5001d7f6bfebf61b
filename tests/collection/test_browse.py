"""Staff browse conversations and pairs: filtered by person, type, date and score margin, paged, each
conversation opened as its participant saw it, in a fixed number of queries whatever the data's size."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import LONG, SHORT, person, rated_conversations
from users.models import Conversation, Reply, Turn

pytestmark = pytest.mark.django_db


def queries_for(client, url) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured), response.content.decode()


def test_only_staff_browse(client, owner):
    client.force_login(owner)
    for name in ("browse_conversations", "browse_pairs"):
        response = client.get(reverse(name))
        assert response.status_code == 403 and "for the study's staff" in response.content.decode()


def test_conversations_filter_page_and_cost_the_same_queries_at_any_size(client, staff):
    for i in range(3):
        rated_conversations(person(f"tea{i}"), n=20)
    rated_conversations(person("coffee"), n=2)
    Conversation.objects.create(user=person("chatter"), kind=Conversation.Kind.CHAT)
    client.force_login(staff)
    url = reverse("browse_conversations")
    few, page = queries_for(client, url)
    assert "63 found · page 1 of 2" in page and page.count("<tr><td>") == 50
    assert queries_for(client, url + "?person=coffee")[1].count("<tr><td>") == 2
    only_chat = queries_for(client, url + "?kind=chat")[1]
    assert "chatter" in only_chat and "tea0" not in only_chat and "(no message yet)" in only_chat
    assert "0 found" in queries_for(client, url + "?since=2999-01-01")[1]
    assert "?person=tea&page=2" in queries_for(client, url + "?person=tea")[1]  # paging keeps the filters
    for i in range(3, 8):
        rated_conversations(person(f"tea{i}"), n=20)
    many, page = queries_for(client, url + "?page=3")
    assert "163 found · page 3 of 4" in page and many == few  # no query per row


def test_pairs_show_both_replies_and_scores_and_follow_the_margin(client, staff):
    rated_conversations(person("tea0"), n=3)  # 90 against 20: a margin of 70
    user = person("close")
    conversation = Conversation.objects.create(user=user, kind=Conversation.Kind.UNGUIDED)
    turn = Turn.objects.create(conversation=conversation, index=0, user_message="Close call?")
    Reply.objects.create(turn=turn, position=0, content="Yes", status="done", score=55, chosen=True)
    Reply.objects.create(turn=turn, position=1, content="No", status="done", score=50)
    client.force_login(staff)
    url = reverse("browse_pairs")
    few, page = queries_for(client, url)
    assert "4 found" in page and "90 vs 20" in page and "55 vs 50" in page
    assert SHORT[:40] in page and LONG[:40] in page
    wide = queries_for(client, url + "?min_margin=10")[1]
    assert "3 found" in wide and "55 vs 50" not in wide
    rated_conversations(person("tea1"), n=30)
    assert queries_for(client, url)[0] == few


def test_staff_open_any_conversation_read_only_and_participants_only_their_own(client, staff, owner):
    chat = Conversation.objects.create(user=owner, kind=Conversation.Kind.CHAT)
    Turn.objects.create(conversation=chat, index=0, user_message="A private chat")
    client.force_login(staff)
    page = client.get(reverse("collect_detail", args=[chat.pk])).content.decode()
    assert "A private chat" in page and "read-only" in page and 'id="rate-form"' not in page
    client.force_login(owner)
    assert client.get(reverse("collect_detail", args=[chat.pk])).status_code == 404  # their chat lives in chat


def test_imported_prism_conversations_are_dated_by_when_people_talked_not_by_the_import(client, staff):
    from tests.collection.test_prism_io import CONVERSATION, SURVEY, jsonl
    from users.prism.importer import prism_import
    from users.prism.writer import prism_export_lines

    undated = {**CONVERSATION, "conversation_id": "c8", "generated_datetime": "not a date"}
    prism_import(files={"survey": jsonl(SURVEY), "conversations": jsonl(CONVERSATION, undated)})
    talked = Conversation.objects.get(prism_id="c7")
    assert talked.created_at.isoformat() == "2023-11-23T09:00:00+00:00" and talked.ended_at == talked.created_at
    assert talked.user.profile.completed_at.isoformat() == "2023-11-22T14:00:00+00:00"
    assert Conversation.objects.get(prism_id="c8").created_at.year >= 2026  # kept as written, dated on import
    client.force_login(staff)
    url = reverse("browse_conversations")
    that_day = queries_for(client, url + "?since=2023-11-23&until=2023-11-23")[1]
    assert "1 found" in that_day and "2023-11-23 09:00" in that_day
    exported = [json.loads(line) for line in prism_export_lines(file="conversations")]
    assert {c["conversation_id"]: c["generated_datetime"] for c in exported} == {
        "c7": "2023-11-23 09:00:00", "c8": "not a date"}  # the export still writes what was read
