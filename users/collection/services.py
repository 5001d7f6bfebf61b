"""PRISM-style collection: conversations whose turns get
several candidate replies, ratings, and the end-of-conversation questions.

The web pages and the synthetic population both write through these
functions. Candidate replies are queued ``Reply`` rows that the `generate`
worker fills; a caller that produces the text itself (the synthetic
population) passes ``enqueue=False`` and then calls ``reply_complete``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from users.conversations import streams
from users.conversations.services import generation_budget_take, reply_enqueue, validate_message
from users.models import SCORE_MAX, SCORE_MIN, Conversation, Reply, ReplySource, Turn, is_score
from users.prism import wording
from users.survey.services import survey_is_complete

LATER_TURN_CANDIDATES = 2  # PRISM: replies A and B from the source chosen in the opening turn


@dataclass(frozen=True)
class Candidate:
    """Where a candidate reply comes from: a source name (never shown to the participant)."""

    source: str
    model_provider: str = "local"


class TieNeedsPick(ValidationError):
    """The top score is shared: the participant must say which reply continues."""

    def __init__(self, tied_ids: list[int]):
        super().__init__("Two or more replies share the top score: choose the one that should continue.")
        self.tied_ids = tied_ids


def active_candidates() -> list[Candidate]:
    return [Candidate(s.name, s.model_provider) for s in ReplySource.objects.filter(active=True).order_by("name")]


def prism_conversation_start(*, user, kind: str, text: str, candidates: list[Candidate] | None = None,
                             n_candidates: int | None = None, rng: random.Random | None = None,
                             enqueue: bool = True) -> Conversation:
    """Open a PRISM conversation: the opening prompt and N candidate replies,
    each from a different source, placed in random order (the order is the
    PRISM ``within_turn_id``; the page shows them in that order)."""
    if kind not in Conversation.PRISM_KINDS:
        raise ValidationError("Pick a conversation type: unguided, values guided or controversy guided.")
    if not survey_is_complete(user):
        raise ValidationError("Please fill in the profile survey before your first conversation.")
    text = validate_message(text)
    rng = rng or random.Random()
    pool = list(candidates) if candidates is not None else active_candidates()
    if not pool:
        raise ValidationError("No reply sources are active: staff can switch some on in the admin.")
    n = min(n_candidates or settings.COLLECTION_CANDIDATES, len(pool))
    if enqueue:  # the synthetic population writes its own candidates and asks the model for nothing
        generation_budget_take(user=user, replies=n)
    chosen_sources = rng.sample(pool, n)  # distinct sources, already in random order
    with transaction.atomic():
        conversation = Conversation.objects.create(user=user, kind=kind, title=text[:80], opening_prompt=text)
        turn = Turn.objects.create(conversation=conversation, index=0, user_message=text)
        _create_candidates(turn, chosen_sources, enqueue=enqueue)
    return conversation


def prism_turn_send(*, conversation: Conversation, text: str, rng: random.Random | None = None,
                    enqueue: bool = True) -> Turn:
    """A later turn: the user's message and replies A and B from the source chosen in the previous turn."""
    text = validate_message(text)
    if enqueue:
        generation_budget_take(user=conversation.user, replies=LATER_TURN_CANDIDATES)
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if locked.ended_at is not None:
            raise ValidationError("This conversation has ended; start a new one.")
        last = locked.turns.order_by("-index").first()
        chosen = last.replies.filter(chosen=True).first() if last else None
        if chosen is None:
            raise ValidationError("Rate the replies above first: the best one continues the conversation.")
        candidate = Candidate(chosen.source, chosen.model_provider or "local")
        turn = Turn.objects.create(conversation=locked, index=last.index + 1, user_message=text)
        _create_candidates(turn, [candidate] * LATER_TURN_CANDIDATES, enqueue=enqueue)
        locked.save(update_fields=["updated_at"])
    return turn


def _create_candidates(turn: Turn, candidates: list[Candidate], *, enqueue: bool) -> list[Reply]:
    replies = Reply.objects.bulk_create([
        Reply(turn=turn, position=i, source=c.source, model_provider=c.model_provider)
        for i, c in enumerate(candidates)
    ])
    if enqueue:
        ids = [r.pk for r in replies]
        transaction.on_commit(lambda: [reply_enqueue(reply_id=i) for i in ids])
    return replies


def reply_complete(*, reply: Reply, content: str, model_name: str = "") -> Reply:
    """Finish a reply whose text was produced outside the worker (synthetic population)."""
    Reply.objects.filter(pk=reply.pk).update(
        status=Reply.Status.DONE, content=content, model_name=model_name[:120], finished_at=timezone.now(),
        token_count=len(content.split()),
    )
    reply.refresh_from_db()
    return reply


def candidate_continue(*, reply: Reply) -> Reply:
    """Have a candidate that stopped at the length limit written on from where it stopped, so the person rates
    a whole reply, not a cut one. Only in the turn being rated, before it is rated; counts against the budget."""
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=reply.turn.conversation_id)
        if conversation.ended_at is not None:
            raise ValidationError("This conversation has ended.")
        if conversation.turns.filter(index__gt=reply.turn.index).exists():
            raise ValidationError("Only the replies of the latest turn can be continued.")
        if reply.turn.replies.filter(chosen=True).exists():
            raise ValidationError("This turn is already rated: its replies stay as they were rated.")
        reply.refresh_from_db()
        if reply.status != Reply.Status.DONE or not reply.serving.get("cut"):
            raise ValidationError("Only a reply that stopped at the length limit can be continued.")
        generation_budget_take(user=conversation.user)
        Reply.objects.filter(pk=reply.pk, status=Reply.Status.DONE).update(
            status=Reply.Status.QUEUED, serving={**reply.serving, "continue": True}, error="", started_at=None,
            finished_at=None, heartbeat_at=None, worker="")
        streams.delete(reply)
        transaction.on_commit(lambda: reply_enqueue(reply_id=reply.pk))
    reply.refresh_from_db()
    return reply


def turn_rate(*, turn: Turn, scores: dict[int, int], pick: int | None = None) -> Turn:
    """Store the 1–100 ratings of a turn's replies and mark the highest as chosen.

    ``scores`` maps reply id to score for every reply that finished (failed
    ones cannot be rated). When the top score is shared, ``pick`` (one of the
    tied reply ids) says which continues; without it ``TieNeedsPick`` is raised.
    """
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=turn.conversation_id)
        if conversation.ended_at is not None:
            raise ValidationError("This conversation has ended.")
        if conversation.turns.filter(index__gt=turn.index).exists():
            raise ValidationError("Only the latest turn can be rated.")
        replies = list(turn.replies.order_by("position"))
        if any(r.chosen for r in replies):
            raise ValidationError("This turn is already rated.")
        if any(not r.is_finished for r in replies):
            raise ValidationError("Wait until every reply has finished before rating.")
        rateable = [r for r in replies if r.status != Reply.Status.FAILED]
        if not rateable:
            raise ValidationError("Every reply failed: press Retry on one of them first.")
        for reply in rateable:
            value = scores.get(reply.pk)
            if not is_score(value):
                raise ValidationError(f"Rate every reply from {SCORE_MIN} (Terrible) to {SCORE_MAX} (Perfect).")
            reply.score = value
        top = max(r.score for r in rateable)
        tied = [r for r in rateable if r.score == top]
        winner = tied[0]
        if len(tied) > 1:
            winner = next((r for r in tied if r.pk == pick), None)
            if winner is None:
                raise TieNeedsPick([r.pk for r in tied])
        for reply in rateable:
            reply.chosen = reply.pk == winner.pk
        Reply.objects.bulk_update(rateable, ["score", "chosen"])
        Turn.objects.filter(pk=turn.pk).update(tied=len(tied) > 1, rated_at=timezone.now())
        conversation.save(update_fields=["updated_at"])
    turn.refresh_from_db()
    return turn


def prism_conversation_end(*, conversation: Conversation, performance: dict[str, int], choice: dict[str, int],
                           feedback: str) -> Conversation:
    """Close the conversation with PRISM's performance and choice attribute sliders and free-text feedback."""
    for name, answers, wanted in (("performance", performance, wording.PERFORMANCE_ATTRIBUTES),
                                  ("choice", choice, wording.CHOICE_ATTRIBUTES)):
        for dim, _ in wanted:
            value = answers.get(dim)
            if not is_score(value):
                raise ValidationError(f"Answer every {name} question from {SCORE_MIN} to {SCORE_MAX} ({dim}).")
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if locked.ended_at is not None:
            raise ValidationError("This conversation has already ended.")
        last = locked.turns.order_by("-index").first()
        if last is None or not last.replies.filter(chosen=True).exists():
            raise ValidationError("Rate the replies of the last turn before ending the conversation.")
        locked.performance_attributes = {d: performance[d] for d, _ in wording.PERFORMANCE_ATTRIBUTES}
        locked.choice_attributes = {d: choice[d] for d, _ in wording.CHOICE_ATTRIBUTES}
        locked.open_feedback = feedback.strip()
        locked.ended_at = timezone.now()
        locked.save()
    return locked
