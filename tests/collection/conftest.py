import pytest

from users.collection import services as collection
from users.models import ReplySource
from users.survey.services import survey_save


@pytest.fixture(autouse=True)
def roomy_budget(settings):
    """These tests queue replies that no worker ever finishes; the budget has its own tests (hardening)."""
    settings.GENERATION_MAX_PENDING = 1000


@pytest.fixture
def enqueued(monkeypatch):
    """Replies that would have gone to the `generate` worker (no broker needed)."""
    sent: list[int] = []
    monkeypatch.setattr(collection, "reply_enqueue", lambda *, reply_id: sent.append(reply_id) or True)
    return sent


def survey_answers(**overrides) -> dict:
    answers = {
        "stated_prefs": {d: 60 for d in ("values", "creativity", "fluency", "factuality", "diversity", "safety",
                                         "personalisation", "helpfulness")},
        "self_description": "I value honesty and kindness.", "lm_familiarity": "Very familiar",
    }
    answers.update(overrides)
    return answers


@pytest.fixture
def sources(db):
    """The four default sources; a transactional test elsewhere may have flushed the migration's rows."""
    from importlib import import_module

    defaults = import_module("users.migrations.0003_default_sources").DEFAULTS
    for name, prompt, temperature, top_p in defaults:
        ReplySource.objects.get_or_create(name=name, defaults={"system_prompt": prompt, "temperature": temperature,
                                                               "top_p": top_p})
    return defaults


@pytest.fixture
def surveyed(owner, sources):
    survey_save(user=owner, **survey_answers())
    return owner


def finish(turn, texts=None):
    """Pretend the worker wrote every reply of the turn."""
    for i, reply in enumerate(turn.replies.order_by("position")):
        collection.reply_complete(reply=reply, content=(texts or {}).get(reply.position, f"reply {turn.index}.{i}"))


def rate(turn, scores_by_position: list[int], pick_position: int | None = None):
    replies = list(turn.replies.order_by("position"))
    scores = {r.pk: s for r, s in zip(replies, scores_by_position)}
    pick = replies[pick_position].pk if pick_position is not None else None
    return collection.turn_rate(turn=turn, scores=scores, pick=pick)


@pytest.fixture
def rated_conversation(surveyed, enqueued):
    """A finished 3-turn PRISM conversation: a tie at the top of turn 0 (picked), a clear turn 1, a full tie in turn 2."""
    conversation = collection.prism_conversation_start(user=surveyed, kind="unguided", text="Opening question")
    turn = conversation.turns.get(index=0)
    finish(turn)
    rate(turn, [35, 80, 80, 10], pick_position=1)  # a tie at the top, the participant picks position 1
    turn = collection.prism_turn_send(conversation=conversation, text="Second question")
    finish(turn)
    rate(turn, [70, 20])
    turn = collection.prism_turn_send(conversation=conversation, text="Third question")
    finish(turn)
    rate(turn, [50, 50], pick_position=0)
    collection.prism_conversation_end(conversation=conversation, performance={d: 70 for d in PERF},
                                      choice={d: 60 for d in PERF}, feedback="Nice.")
    conversation.refresh_from_db()
    return conversation


PERF = ["values", "creativity", "fluency", "factuality", "diversity", "safety", "helpfulness"]
