"""A newcomer's onboarding, written: begin, answer, skip, enough. Every answer places the person again
(``trainer.core.placement``, no model) and is kept as a normal pair: a one-turn onboarding conversation whose
chosen reply is rated ``CHOSEN_SCORE`` against ``OTHER_SCORE``, so it feeds the next run like any other rating.
The person's own rows only: the views pass the signed-in user."""

from __future__ import annotations

import random
import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from trainer.core.placement import estimate, next_question
from trainer.selectors import active_run
from users.chat.services import fastfit_maybe_enqueue
from users.models import Conversation, Onboarding, Reply, Turn
from users.newcomer.selectors import Pool, answers_of, estimate_of, is_newcomer, pool_for

# A blind choice between two replies, on PRISM's 1-100 scale: a clear preference of ordinary size (the margin a
# margin-weighted pairing reads is 30 points).
CHOSEN_SCORE, OTHER_SCORE = 65, 35
SOURCE = "onboarding"


class NotDue(Exception):
    """There is nothing to onboard onto: no active version with a ready pool, or the person is not new to it."""


def _pool_now(user) -> tuple[object, Pool]:
    run = active_run()
    if not is_newcomer(user, run):
        raise NotDue("The active version already knows you (or has no personal vectors): go straight to chat.")
    pool = pool_for(run)
    if pool is None:
        raise NotDue("The active version's first questions are not ready yet: start chatting meanwhile.")
    return run, pool


def _row(user, run) -> Onboarding:
    """The person's onboarding on ``run``, locked (made, with today's strategy, if there was none)."""
    onboarding, _ = Onboarding.objects.select_for_update().get_or_create(
        user=user, run=run, defaults={"strategy": settings.ONBOARDING_STRATEGY})
    return onboarding


def _finish(onboarding: Onboarding) -> None:
    onboarding.status, onboarding.asking, onboarding.finished_at = Onboarding.Status.FINISHED, "", timezone.now()


def onboarding_begin(*, user) -> tuple[Onboarding, Pool]:
    """The person's onboarding on the active version, begun (its first question chosen) if it was not."""
    run, pool = _pool_now(user)
    with transaction.atomic():
        onboarding = _row(user, run)
        if onboarding.status == Onboarding.Status.ASKING and onboarding.asking not in pool.pairs:
            _ask_next(onboarding, pool)
            onboarding.save()
    return onboarding, pool


def _ask_next(onboarding: Onboarding, pool: Pool) -> None:
    """Choose the next question (or finish when enough were answered or none is left)."""
    asked = len(onboarding.answers) + len(onboarding.skipped)
    rng = random.Random(f"{onboarding.pk}:{asked}")
    following = None
    if len(onboarding.answers) < settings.ONBOARDING_QUESTIONS:
        following = next_question(pool.pairs, answers_of(onboarding), estimate_of(onboarding, pool),
                                  strategy=onboarding.strategy, rng=rng, skipped=frozenset(onboarding.skipped))
    if following is None:
        _finish(onboarding)
    else:
        onboarding.asking, onboarding.a_first = following.key, rng.random() < 0.5


def _locked(user, key: str) -> tuple[Onboarding, Pool]:
    run, pool = _pool_now(user)
    onboarding = Onboarding.objects.select_for_update().filter(user=user, run=run).first()
    if onboarding is None or onboarding.status != Onboarding.Status.ASKING:
        raise ValidationError("Your first questions are already over: go on to chat.")
    if onboarding.asking != key:
        raise ValidationError("That question was already answered (in another tab?): here is the next one.")
    return onboarding, pool


def onboarding_answer(*, user, key: str, choice: str) -> Onboarding:
    """The person preferred the ``left`` or ``right`` reply of the question shown: keep it as a pair, place them
    again and choose the next question. The seconds this took are kept with the answer."""
    if choice not in ("left", "right"):
        raise ValidationError("Pick the reply you prefer: the left one or the right one.")
    started = time.perf_counter()
    with transaction.atomic():
        onboarding, pool = _locked(user, key)
        a_better = (choice == "left") == onboarding.a_first
        _keep_as_pair(user, pool.texts[key], a_better)
        answers = [*onboarding.answers, {"key": key, "a_better": a_better}]
        onboarding.answers = answers
        placed = estimate(pool.space, pool.pairs, answers_of(onboarding))
        onboarding.coordinates, onboarding.covariance = placed.mean.tolist(), placed.covariance.tolist()
        _ask_next(onboarding, pool)
        answers[-1]["seconds"] = round(time.perf_counter() - started, 4)
        onboarding.save()
    if onboarding.status == Onboarding.Status.FINISHED:
        fastfit_maybe_enqueue(user=user)  # see onboarding_enough
    return onboarding


def onboarding_skip(*, user, key: str) -> Onboarding:
    with transaction.atomic():
        onboarding, pool = _locked(user, key)
        onboarding.skipped = [*onboarding.skipped, key]
        _ask_next(onboarding, pool)
        onboarding.save()
    return onboarding


def onboarding_enough(*, user) -> Onboarding | None:
    """"Enough, start chatting": no more questions on this version (what was answered stays)."""
    run = active_run()
    if run is None:
        return None
    with transaction.atomic():
        onboarding = _row(user, run)
        if onboarding.status != Onboarding.Status.FINISHED:
            _finish(onboarding)
            onboarding.save()
    if onboarding.answers:
        # The full refit, once the questions are over and enough pairs came in: it is measured against the quick
        # vectors the answers ended at, and serves only if it ranks the person's pairs better.
        fastfit_maybe_enqueue(user=user)
    return onboarding


def _keep_as_pair(user, question: dict, a_better: bool) -> None:
    now = timezone.now()
    conversation = Conversation.objects.create(user=user, kind=Conversation.Kind.ONBOARDING,
                                               title=question["prompt"][:80], opening_prompt=question["prompt"],
                                               ended_at=now, extra={"onboarding_question": question["key"]})
    turn = Turn.objects.create(conversation=conversation, index=0, user_message=question["prompt"], rated_at=now)
    for position, (text, better) in enumerate(((question["a"], a_better), (question["b"], not a_better))):
        Reply.objects.create(turn=turn, position=position, source=SOURCE, model_name="onboarding pool",
                             status=Reply.Status.DONE, content=text, chosen=better, finished_at=now,
                             score=CHOSEN_SCORE if better else OTHER_SCORE)
