import pytest
from django.core.exceptions import ValidationError

from tests.collection.conftest import PERF, finish, rate, survey_answers
from users.chat import services
from users.collection import services as collection
from users.collection.pairs import preference_pairs
from users.conversations.services import reply_generation_settings
from users.models import Conversation, Reply, ReplySource
from users.survey.services import survey_save


def test_the_survey_is_required_before_the_first_conversation(owner, enqueued):
    with pytest.raises(ValidationError, match="survey"):
        collection.prism_conversation_start(user=owner, kind="unguided", text="Hi")
    assert not Conversation.objects.exists()


def test_the_survey_can_be_edited_and_keeps_its_first_completion_time(owner):
    first = survey_save(user=owner, **survey_answers())
    again = survey_save(user=owner, **survey_answers(self_description="Changed my mind."))
    assert again.pk == first.pk and again.completed_at == first.completed_at
    assert again.self_description == "Changed my mind."


def test_a_stated_preference_outside_1_to_100_is_refused(owner):
    answers = survey_answers()
    answers["stated_prefs"]["safety"] = 101
    with pytest.raises(ValidationError, match="safety"):
        survey_save(user=owner, **answers)


def test_an_opening_prompt_gets_four_queued_replies_from_distinct_sources(surveyed, enqueued,
                                                                         django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        conversation = collection.prism_conversation_start(user=surveyed, kind="values guided", text="What is fair?")
    replies = list(Reply.objects.filter(turn__conversation=conversation).order_by("position"))
    assert [r.position for r in replies] == [0, 1, 2, 3]
    assert len({r.source for r in replies}) == 4
    assert all(r.status == Reply.Status.QUEUED for r in replies)
    assert sorted(enqueued) == sorted(r.pk for r in replies)
    assert conversation.opening_prompt == "What is fair?"


def test_the_candidates_come_in_a_random_order(surveyed, enqueued):
    orders = set()
    for _ in range(12):
        conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Hi")
        orders.add(tuple(conversation.turns.get().replies.order_by("position").values_list("source", flat=True)))
    assert len(orders) > 1


def test_the_highest_rated_reply_continues(surveyed, enqueued):
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Hi")
    turn = conversation.turns.get()
    finish(turn)
    rate(turn, [10, 90, 40, 20])
    chosen = turn.replies.get(chosen=True)
    assert chosen.position == 1 and not turn.tied
    later = collection.prism_turn_send(conversation=conversation, text="More")
    assert [r.source for r in later.replies.all()] == [chosen.source, chosen.source]


def test_a_tie_at_the_top_needs_the_participant_to_pick(surveyed, enqueued):
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Hi")
    turn = conversation.turns.get()
    finish(turn)
    with pytest.raises(collection.TieNeedsPick) as caught:
        rate(turn, [70, 70, 10, 20])
    replies = list(turn.replies.order_by("position"))
    assert caught.value.tied_ids == [replies[0].pk, replies[1].pk]
    assert not turn.replies.filter(chosen=True).exists()
    turn = rate(turn, [70, 70, 10, 20], pick_position=1)
    assert turn.tied and turn.replies.get(chosen=True).position == 1


def test_replies_cannot_be_rated_before_they_finish(surveyed, enqueued):
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Hi")
    with pytest.raises(ValidationError, match="finished"):
        rate(conversation.turns.get(), [1, 2, 3, 4])


def test_a_score_outside_1_to_100_is_refused(surveyed, enqueued):
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Hi")
    turn = conversation.turns.get()
    finish(turn)
    with pytest.raises(ValidationError):
        rate(turn, [0, 50, 50, 50])
    assert not Reply.objects.filter(score__isnull=False).exists()


def test_the_next_turn_waits_for_the_ratings(surveyed, enqueued):
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Hi")
    with pytest.raises(ValidationError, match="Rate"):
        collection.prism_turn_send(conversation=conversation, text="More")


def test_ending_stores_the_attribute_sliders_and_feedback(rated_conversation):
    assert rated_conversation.ended_at is not None
    assert rated_conversation.performance_attributes == {d: 70 for d in PERF}
    assert rated_conversation.choice_attributes == {d: 60 for d in PERF}
    assert rated_conversation.open_feedback == "Nice."
    with pytest.raises(ValidationError):
        collection.prism_turn_send(conversation=rated_conversation, text="After the end")


def test_pairs_put_the_chosen_reply_against_each_rejected_one_and_skip_ties(rated_conversation, surveyed):
    pairs = list(preference_pairs())
    # turn 0: chosen 80 vs 35 and 10 (the other 80 is a tie); turn 1: 70 vs 20; turn 2: a tie, no pair
    assert [(p["turn"], p["score_chosen"], p["score_rejected"]) for p in pairs] == [
        (0, 80, 35), (0, 80, 10), (1, 70, 20)]
    assert pairs[0]["user_id"] == "web-" + surveyed.username
    assert pairs[0]["prompt"] == [{"role": "user", "content": "Opening question"}]
    assert pairs[2]["prompt"] == [{"role": "user", "content": "Opening question"},
                                  {"role": "assistant", "content": "reply 0.1"},
                                  {"role": "user", "content": "Second question"}]
    assert pairs[2]["chosen"] == [{"role": "assistant", "content": "reply 1.0"}]
    assert pairs[2]["rejected"] == [{"role": "assistant", "content": "reply 1.1"}]
    assert set(pairs[0]) == {"user_id", "conversation_id", "turn", "prompt", "chosen", "rejected", "score_chosen",
                             "score_rejected"}


def test_a_minimum_margin_drops_close_pairs(rated_conversation):
    assert [(p["score_chosen"], p["score_rejected"]) for p in preference_pairs(min_margin=50)] == [(80, 10), (70, 20)]


def test_pairs_can_carry_the_profile_text(rated_conversation):
    assert {p["profile"] for p in preference_pairs(with_profile=True)} == {"I value honesty and kindness."}


def test_the_exported_pairs_load_in_the_training_library(rated_conversation, tmp_path):
    from trainer.core import data

    path = tmp_path / "pairs.jsonl"
    from users.collection.pairs import pairs_export_lines

    path.write_text("".join(pairs_export_lines()))
    pairs = data.read_pairs(path)
    assert len(pairs) == 3 and pairs[0].score_chosen == 80


def test_a_source_brings_its_system_prompt_and_sampling_to_the_worker(surveyed, enqueued, settings):
    ReplySource.objects.update(active=False)
    ReplySource.objects.create(name="terse", system_prompt="Be terse.", temperature=0.2, top_p=0.5,
                               max_new_tokens=33)
    ReplySource.objects.create(name="plain", temperature=1.0, top_p=1.0)
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Hi")
    terse = conversation.turns.get().replies.get(source="terse")
    messages, sampling = reply_generation_settings(reply=terse)
    assert messages == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]
    assert sampling == {"max_new_tokens": 33, "temperature": 0.2, "top_p": 0.5}
    plain = conversation.turns.get().replies.get(source="plain")
    messages, sampling = reply_generation_settings(reply=plain)
    assert messages == [{"role": "user", "content": "Hi"}]
    assert sampling["max_new_tokens"] == settings.COLLECTION_MAX_NEW_TOKENS


def test_collection_candidates_get_the_collection_cap_and_penalty_and_chat_replies_neither(surveyed, enqueued,
                                                                                          settings):
    settings.COLLECTION_MAX_NEW_TOKENS, settings.CHAT_MAX_NEW_TOKENS = 300, 40
    settings.COLLECTION_REPETITION_PENALTY = 1.2
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Hi")
    candidate = conversation.turns.get().replies.first()
    sampling = reply_generation_settings(reply=candidate)[1]
    assert sampling["max_new_tokens"] == 300 and sampling["repetition_penalty"] == 1.2
    chat = Reply.objects.create(turn=services.conversation_create(user=surveyed).turns.create(index=0,
                                                                                            user_message="Hi"))
    sampling = reply_generation_settings(reply=chat)[1]
    assert sampling["max_new_tokens"] == 40 and "repetition_penalty" not in sampling


def test_a_plain_chat_reply_keeps_the_default_sampling(owner, settings):
    reply = Reply.objects.create(turn=services.conversation_create(user=owner).turns.create(index=0, user_message="Hi"))
    messages, sampling = reply_generation_settings(reply=reply)
    assert messages == [{"role": "user", "content": "Hi"}]
    assert sampling == {"max_new_tokens": settings.CHAT_MAX_NEW_TOKENS, "temperature": settings.CHAT_TEMPERATURE,
                        "top_p": settings.CHAT_TOP_P}
