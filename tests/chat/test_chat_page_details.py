"""What the chat and compare pages say: a chat's name, Continue only where the model can go on, a person's
rewrite shown as theirs, and a compare page that explains itself while no version is active."""

import datetime

import pytest
from django.urls import reverse

from users.chat import services as personal
from users.models import Conversation, Reply, Turn

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}
CONTINUE = "Please continue from where you stopped."


@pytest.fixture(autouse=True)
def nothing_generated(settings, test_redis, monkeypatch):
    """Replies are queued, never written: no broker, no budget in the way."""
    settings.CHAT_RATE_PER_MINUTE = 0
    settings.GENERATION_MAX_PENDING = 1000
    monkeypatch.setattr(personal, "reply_enqueue", lambda *, reply_id: True)


def cut_reply(conversation, index, text="Tell me more."):
    """A finished chat reply that stopped at the length limit."""
    turn = Turn.objects.create(conversation=conversation, index=index, user_message=text)
    return Reply.objects.create(turn=turn, source="personal", status=Reply.Status.DONE, chosen=True,
                                content=f"A long answer, part {index}", serving={"cut": True}, token_count=32)


def test_an_untitled_chat_is_named_by_its_day_never_by_an_id(owner_client, owner):
    conversation = Conversation.objects.get(pk=owner_client.post(reverse("chat_new")).url.split("/")[-2])
    Conversation.objects.filter(pk=conversation.pk).update(
        created_at=datetime.datetime(2026, 3, 5, 12, tzinfo=datetime.UTC))
    page = owner_client.get(reverse("chat_detail", args=[conversation.pk])).content.decode()
    assert "<h1>Chat on 5 March 2026</h1>" in page
    assert f"Conversation {conversation.pk}" not in page
    assert "Chat on 5 March 2026" in owner_client.get(reverse("chat_list")).content.decode()


def test_a_chat_is_titled_by_its_first_message_on_one_line_and_cut_at_a_word(owner):
    conversation = personal.conversation_create(user=owner)
    personal.chat_send(conversation=conversation, text="  How do I\n brew   green tea without it turning bitter, "
                                                       "and at what temperature should the water be?  ")
    personal.chat_send(conversation=conversation, text="Thanks!")
    conversation.refresh_from_db()
    assert str(conversation) == "How do I brew green tea without it turning bitter, and at…"


def test_continue_is_offered_on_the_newest_reply_only(owner_client, owner):
    conversation = personal.conversation_create(user=owner)
    cut_reply(conversation, 0)
    newest = cut_reply(conversation, 1)
    page = owner_client.get(reverse("chat_detail", args=[conversation.pk])).content.decode()
    assert page.count("This reply was cut at the length limit") == 2  # both say they were cut
    assert page.count('class="continue-form"') == 1
    last_turn = page.split('id="turn-1"')[1]
    assert 'class="continue-form"' in last_turn and f'name="continues" value="{newest.pk}"' in last_turn


def test_continuing_an_older_reply_is_refused_and_sends_nothing(owner_client, owner):
    conversation = personal.conversation_create(user=owner)
    older = cut_reply(conversation, 0)
    newest = cut_reply(conversation, 1)
    url = reverse("chat_send", args=[conversation.pk])
    refused = owner_client.post(url, {"message": CONTINUE, "continues": older.pk}, headers=HTMX)
    assert refused.status_code == 422 and "Only the newest reply can be continued" in refused.content.decode()
    refused = owner_client.post(url, {"message": CONTINUE, "continues": "not-a-reply"})
    assert refused.status_code == 422 and f"{CONTINUE}</textarea>" not in refused.content.decode()  # the composer
    assert conversation.turns.count() == 2
    assert owner_client.post(url, {"message": CONTINUE, "continues": newest.pk}, headers=HTMX).status_code == 200
    assert conversation.turns.order_by("-index").first().user_message == CONTINUE


def test_a_reply_replaced_by_a_rewrite_cannot_be_continued(owner):
    conversation = personal.conversation_create(user=owner)
    reply = cut_reply(conversation, 0)
    personal.reply_quick_rate(reply=reply, score=20, rewrite="Short answer, please.")
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="Only the newest reply"):
        personal.personal_chat_send(conversation=conversation, text=CONTINUE, continues=reply.pk)


def test_a_rewrite_is_shown_as_the_persons_own_words_to_them_and_to_staff(client, owner, staff):
    conversation = personal.conversation_create(user=owner)
    reply = cut_reply(conversation, 0)
    personal.reply_quick_rate(reply=reply, score=20, rewrite="Short answer, please.")
    rewrite = Reply.objects.get(source="rewrite")

    def bubble(page: str) -> str:
        start = page.rindex("<div", 0, page.index(f'id="reply-{rewrite.pk}"'))
        return page[start:page.index("Short answer, please.", start)]

    client.force_login(owner)
    mine = bubble(client.get(reverse("chat_detail", args=[conversation.pk])).content.decode())
    assert 'class="bubble rewrite' in mine and "Your rewrite" in mine and "bubble model" not in mine
    client.force_login(staff)
    theirs = bubble(client.get(reverse("collect_detail", args=[conversation.pk])).content.decode())
    assert "Participant's rewrite" in theirs and "Your rewrite" not in theirs


def test_the_compare_page_explains_when_comparison_opens_instead_of_offering_a_form(owner_client):
    page = owner_client.get(reverse("compare_home")).content.decode()
    assert f'action="{reverse("compare_start")}"' not in page
    closed = page.split('id="compare-closed"')[1].split("</p>")[0]
    assert "Comparison opens once the study's staff" in closed and "activated it" in closed


def test_the_compare_page_offers_its_form_once_a_version_is_active(owner_client, staff):
    from trainer.models import Activation, TrainingRun

    run = TrainingRun.objects.create(name="v", created_by=staff, status=TrainingRun.Status.COMPLETED,
                                     artifacts="runs/v/model", config={"user_model": "individual"})
    Activation.objects.create(run=run, activated_by=staff)
    page = owner_client.get(reverse("compare_home")).content.decode()
    assert f'action="{reverse("compare_start")}"' in page and 'id="compare-closed"' not in page


def test_staff_see_a_rewrite_headed_as_the_participants_own_words_without_a_reply_number_or_rating(client, owner,
                                                                                                  staff):
    conversation = personal.conversation_create(user=owner)
    personal.reply_quick_rate(reply=cut_reply(conversation, 0), score=20, rewrite="Short answer, please.")
    rewrite = Reply.objects.get(source="rewrite")
    client.force_login(staff)
    page = client.get(reverse("collect_detail", args=[conversation.pk])).content.decode()
    card = page[page.rindex('<div class="candidate', 0, page.index(f'id="reply-{rewrite.pk}"')):]
    card = card[:card.index("Short answer, please.")]
    heading = card[card.index('<h3'):card.index('</h3>')]
    assert "Participant's rewrite" in heading and "Reply " not in heading
    assert f"Rating: {rewrite.score}" not in page.split(f'id="reply-{rewrite.pk}"', 1)[1].split("</article>")[0]
