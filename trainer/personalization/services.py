"""Writes on personalization evaluations: start one (by hand, by command, or when a run and its baseline have
both completed), cancel it, claim it for a worker, fail a silent one, and record a person's blind ratings."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from alignment_site import dispatch
from trainer.models import EvaluationItem, PersonalEvaluation, TrainingRun, fail_silent

TASK = "trainer.evaluate_version"
# The sizes and sampling of an evaluation. The sampling is the chat's; every reply to one prompt uses the same
# seed, so the four differ only by the model that wrote them.
DEFAULTS = {
    "prompts_per_person": 4,  # held-out prompts each person is judged on
    "max_people": 40,  # evaluated people (the version's own, in a seeded random order)
    "max_new_tokens": 96,
    "temperature": 0.7,
    "top_p": 0.9,
    "blind_per_person": 2,  # of a real person's prompts, how many wait on their compare page to be judged
    "generation_batch": 16,  # replies per forward pass
    "seed": 0,
}


class EvaluationStateError(RuntimeError):
    """The evaluation (or its run) is not in a state that allows this; the message says why."""


def evaluation_settings(overrides: dict | None = None) -> dict:
    merged = {**DEFAULTS, **(overrides or {})}
    unknown = set(merged) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown evaluation setting {', '.join(sorted(unknown))}; known: {', '.join(DEFAULTS)}")
    return merged


def evaluation_start(*, run: TrainingRun, created_by=None, overrides: dict | None = None,
                     enqueue: bool = True) -> PersonalEvaluation:
    """Queue the evaluation of a completed, personalized run (against its baseline when that completed);
    ``enqueue=False`` leaves it queued for the caller to run here (``manage.py evaluate_version --here``)."""
    if run.status != TrainingRun.Status.COMPLETED:
        raise EvaluationStateError(f"{run} has not completed, so there is no model to evaluate yet.")
    if (run.config or {}).get("user_model", "none") == "none":
        raise EvaluationStateError(f"{run} has no user model: evaluate the personalized run it is the baseline of.")
    # The run's own token budget (read off the length of the replies people chose) unless one is given.
    budget = (run.config or {}).get("eval_max_new_tokens", DEFAULTS["max_new_tokens"])
    chosen = evaluation_settings({"max_new_tokens": budget, **(overrides or {})})
    with transaction.atomic():
        TrainingRun.objects.select_for_update().get(pk=run.pk)  # one start at a time per run
        if PersonalEvaluation.objects.filter(run=run, status__in=PersonalEvaluation.ACTIVE).exists():
            raise EvaluationStateError(f"{run} is being evaluated already: wait for it, or cancel it first.")
        baseline = run.baseline if run.baseline_id and run.baseline.status == TrainingRun.Status.COMPLETED else None
        evaluation = PersonalEvaluation.objects.create(run=run, baseline=baseline, created_by=created_by,
                                                       settings=chosen)
        if enqueue:
            transaction.on_commit(lambda: evaluation_enqueue(evaluation_id=evaluation.pk))
    return evaluation


def evaluation_enqueue(*, evaluation_id: int) -> bool:
    return dispatch.enqueue_row(
        TASK, PersonalEvaluation, evaluation_id, queue="train",
        reason="Redis (the broker) was not reachable, so no worker was asked to evaluate. Start Redis and "
               "start the evaluation again.")


def evaluation_start_after_training(*, run_id: int) -> PersonalEvaluation | None:
    """When a personalized run and its plain-DPO baseline have both completed (whichever ends second calls
    this), start the run's evaluation, unless one exists already."""
    run = TrainingRun.objects.filter(pk=run_id).select_related("baseline").first()
    if run is None:
        return None
    if run.baseline_id is None:  # perhaps it is the baseline
        run = TrainingRun.objects.filter(baseline_id=run_id).select_related("baseline").first()
    if run is None or run.status != TrainingRun.Status.COMPLETED or run.baseline is None \
            or run.baseline.status != TrainingRun.Status.COMPLETED:
        return None
    if PersonalEvaluation.objects.filter(run=run).exists():
        return None
    try:
        return evaluation_start(run=run, created_by=run.created_by)
    except EvaluationStateError:  # started by someone else meanwhile
        return None


def evaluation_cancel(*, evaluation: PersonalEvaluation) -> None:
    """A queued evaluation stops at once; a running one after its current batch of replies (nothing is kept)."""
    now = timezone.now()
    if PersonalEvaluation.objects.filter(pk=evaluation.pk, status=PersonalEvaluation.Status.QUEUED).update(
            status=PersonalEvaluation.Status.CANCELLED, finished_at=now, error="Cancelled before it started."):
        return
    if not PersonalEvaluation.objects.filter(pk=evaluation.pk, status=PersonalEvaluation.Status.RUNNING).update(
            cancel_requested=True):
        raise EvaluationStateError("Only a queued or running evaluation can be cancelled.")


def evaluation_claim(*, evaluation_id: int, worker: str) -> bool:
    now = timezone.now()
    return bool(PersonalEvaluation.objects.filter(pk=evaluation_id, status=PersonalEvaluation.Status.QUEUED).update(
        status=PersonalEvaluation.Status.RUNNING, worker=worker, started_at=now, heartbeat_at=now, error="",
        phase="starting"))


def evaluation_finish(evaluation_id: int, status: str, **fields) -> None:
    PersonalEvaluation.objects.filter(pk=evaluation_id, status=PersonalEvaluation.Status.RUNNING).update(
        status=status, finished_at=timezone.now(), phase="", cancel_requested=False, **fields)


def evaluations_reap_stale() -> int:
    """Fail running evaluations whose worker fell silent (every worker's bookkeeping calls this)."""
    return fail_silent(PersonalEvaluation, again="Start the evaluation again.", phase="")


def evaluation_items_judge(*, conversation) -> int:
    """A person rated a blind comparison the evaluation left on their compare page: their 1-100 scores become
    the item's outcomes (own vectors against each of the others; equal scores are a tie)."""
    from trainer.core.winrate import outcome

    item = EvaluationItem.objects.filter(conversation=conversation).first()
    if item is None:
        return 0
    scores = {r.source.removeprefix("compare-"): r.score
              for r in conversation.turns.first().replies.all() if r.score is not None}
    own = scores.get("personal")
    if own is None:
        return 0
    outcomes = {other: outcome(own, scores[key]) for other, key in
                (("baseline", "baseline"), ("generic", "generic"), ("base", "base")) if key in scores}
    return EvaluationItem.objects.filter(pk=item.pk).update(outcomes=outcomes)
