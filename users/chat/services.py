"""The participant's chat: writes. Chat with the active version, blind
comparisons, quick ratings and rewrites on chat replies, and the fast fit
that a person's new pairs trigger.

Every function takes the person's own rows (the views fetch them through the
scoped selectors), so nobody can rate, compare or refit for someone else.
"""

from __future__ import annotations

import random
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from alignment_site import dispatch
from trainer.selectors import active_run
from users.chat.selectors import COMPARE_SOURCES, new_pairs_since_fit
from users.collection.services import turn_rate
from users.conversations.services import generation_budget_take, reply_enqueue, reply_retry, validate_message
from users.models import SCORE_MAX, Conversation, Reply, Turn, VectorFit, is_score

FAST_FIT_TASK = "trainer.fast_fit"


def conversation_create(*, user, kind: str = Conversation.Kind.CHAT) -> Conversation:
    return Conversation.objects.create(user=user, kind=kind)


def title_from(text: str, limit: int = 60) -> str:
    """A chat's title from its first message: on one line, cut at a word with an ellipsis when long."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,;:.-") + "…"


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    """A chat's own title (blank: its default name)."""
    title = " ".join(title.split())
    if len(title) > 120:
        raise ValidationError(f"A title has at most 120 characters; this one has {len(title)}.")
    conversation.title = title
    conversation.save(update_fields=["title"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a chat with its messages, replies and the ratings given in it. Not while a reply is still
    being written (the worker writing it would lose its row): stop it or let it finish first."""
    if conversation.kind != Conversation.Kind.CHAT:
        raise ValidationError("Only chats can be deleted here; study conversations stay with the study's data.")
    if Reply.objects.filter(turn__conversation=conversation).exclude(status__in=Reply.FINISHED).exists():
        raise ValidationError("A reply in this chat is still being written: stop it or let it finish, then delete.")
    conversation.delete()


def reply_regenerate(*, reply: Reply) -> Reply:
    """Write the newest reply of a chat again (another sample). Not a rated reply (its rating is training
    data) and not an earlier one (later turns build on it)."""
    turn = reply.turn
    if turn.conversation.kind != Conversation.Kind.CHAT or reply.status != Reply.Status.DONE:
        raise ValidationError("Only a finished chat reply can be written again.")
    if reply.score is not None:
        raise ValidationError("You rated this reply, so it stays: your rating teaches the model.")
    if turn.conversation.turns.filter(index__gt=turn.index).exists():
        raise ValidationError("Only the newest reply can be written again: the later messages answer this one.")
    return reply_retry(reply=reply, from_statuses=(Reply.Status.DONE,))


def chat_open_empty(*, user) -> Conversation:
    """The person's newest chat that has no message yet, or a new one: New chat leaves no empty chats behind."""
    empty = (Conversation.objects.filter(user=user, kind=Conversation.Kind.CHAT, turns__isnull=True)
             .order_by("-pk").first())
    return empty or conversation_create(user=user)


def chat_send(*, conversation: Conversation, text: str, source: str = "base") -> Reply:
    """Store the user's message and a queued reply, then ask a worker for it.

    The task is published after the commit, so the worker always finds the
    rows; when the broker is down the reply is marked failed with a reason
    and the message stays saved.
    """
    text = validate_message(text)
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        last = locked.turns.order_by("-index").values_list("index", flat=True).first()
        turn = Turn.objects.create(conversation=locked, index=0 if last is None else last + 1, user_message=text)
        reply = Reply.objects.create(turn=turn, position=0, source=source, chosen=True)
        if not locked.title:
            locked.title = title_from(text)
        locked.save(update_fields=["title", "updated_at"])
        transaction.on_commit(lambda: reply_enqueue(reply_id=reply.pk))
    return reply


def personal_chat_send(*, conversation: Conversation, text: str, continues: int | None = None) -> Reply:
    """A chat message answered by the active version with the person's vectors (the base model when none is active).
    ``continues``: the reply whose Continue button sent it, which must be the one the model would go on from."""
    validate_message(text)
    if continues is not None:
        continue_check(conversation=conversation, reply_id=continues)
    generation_budget_take(user=conversation.user)
    return chat_send(conversation=conversation, text=text, source="personal")


def continue_check(*, conversation: Conversation, reply_id: int) -> None:
    """Continue asks the model to go on from its last reply, so it applies only to the newest turn's reply that
    continues the chat (not an older one, nor one the person replaced with their rewrite)."""
    newest = conversation.turns.order_by("-index").first()
    if newest is None or not newest.replies.filter(pk=reply_id, chosen=True).exists():
        raise ValidationError("Only the newest reply can be continued: the model goes on from the last reply in "
                              "this chat, which this one no longer is. Ask about it in a new message instead.")


def compare_start(*, user, text: str, rng: random.Random | None = None) -> Conversation:
    """One prompt, three replies (personal vectors, generic vectors, base model) in a random order."""
    text = validate_message(text)
    if active_run() is None:
        raise ValidationError("No model version is active yet, so there is nothing personal to compare. "
                              "Staff activate a trained version on the runs page.")
    generation_budget_take(user=user, replies=len(COMPARE_SOURCES))
    sources = list(COMPARE_SOURCES)
    (rng or random.Random()).shuffle(sources)
    with transaction.atomic():
        conversation = Conversation.objects.create(user=user, kind=Conversation.Kind.COMPARE, title=text[:80],
                                                   opening_prompt=text)
        turn = Turn.objects.create(conversation=conversation, index=0, user_message=text)
        replies = Reply.objects.bulk_create([Reply(turn=turn, position=i, source=s, model_provider="local")
                                             for i, s in enumerate(sources)])
        ids = [r.pk for r in replies]
        transaction.on_commit(lambda: [reply_enqueue(reply_id=i) for i in ids])
    return conversation


def compare_rate(*, turn: Turn, scores: dict[int, int], pick: int | None = None) -> VectorFit | None:
    """Store the blind 1–100 ratings (the best reply becomes chosen: pairs as in collection); maybe refit."""
    if turn.conversation.kind != Conversation.Kind.COMPARE:
        raise ValidationError("Only comparisons are rated here.")
    from trainer.personalization.services import evaluation_items_judge

    with transaction.atomic():
        turn_rate(turn=turn, scores=scores, pick=pick)
        evaluation_items_judge(conversation=turn.conversation)  # one left by an evaluation: the report counts it
    return fastfit_maybe_enqueue(user=turn.conversation.user)


def reply_quick_rate(*, reply: Reply, score: int, rewrite: str = "") -> VectorFit | None:
    """Rate a chat reply 1–100; a rewrite (what the person wanted) is stored as the chosen reply,
    which makes the pair rewrite ≻ reply and continues the conversation with it."""
    if reply.turn.conversation.kind != Conversation.Kind.CHAT:
        raise ValidationError("Only chat replies get a quick rating.")
    if reply.status != Reply.Status.DONE:
        raise ValidationError("Wait until the reply has finished before rating it.")
    if not is_score(score):
        raise ValidationError("Rate the reply from 1 (Terrible) to 100 (Perfect).")
    rewrite = (rewrite or "").strip()
    if rewrite:
        rewrite = validate_message(rewrite)
    with transaction.atomic():
        locked = Reply.objects.select_for_update().get(pk=reply.pk)
        if Reply.objects.filter(turn_id=locked.turn_id, source="rewrite").exists():
            raise ValidationError("This reply already has your rewrite.")
        locked.score = score
        if rewrite:
            locked.score = min(score, SCORE_MAX - 1)  # the rewrite must win the pair
            locked.chosen = False
            position = max(Reply.objects.filter(turn_id=locked.turn_id).values_list("position", flat=True)) + 1
            Reply.objects.create(turn_id=locked.turn_id, position=position, source="rewrite", content=rewrite,
                                 status=Reply.Status.DONE, score=SCORE_MAX, chosen=True,
                                 model_name="rewrite by the user", finished_at=timezone.now())
        locked.save(update_fields=["score", "chosen"])
    reply.refresh_from_db()
    if not rewrite:
        return None  # a single rating makes no pair on its own
    return fastfit_maybe_enqueue(user=reply.turn.conversation.user)


def fastfit_maybe_enqueue(*, user) -> VectorFit | None:
    """Queue a refit of the person's vectors once FASTFIT_EVERY_PAIRS new pairs have come in since the last one."""
    run = active_run()
    if run is None or not run.has_vectors:
        return None
    with transaction.atomic():
        if VectorFit.objects.select_for_update().filter(
                user=user, run=run, status__in=[VectorFit.Status.QUEUED, VectorFit.Status.RUNNING]).exists():
            return None
        total, fresh = new_pairs_since_fit(user=user, run=run)
        if fresh < settings.FASTFIT_EVERY_PAIRS:
            return None
        fit = VectorFit.objects.create(user=user, run=run, pairs_total=total)
        transaction.on_commit(lambda: fastfit_enqueue(fit_id=fit.pk))
    return fit


def fits_reap_stale(*, worker: str | None = None) -> int:
    """Fail the refits nobody is finishing, with the reason, so the person may ask again: with ``worker`` (it
    restarted) the ones it was running; without, those running longer than ``FIT_STALL_SECONDS`` (a fit takes
    about a minute: its worker was killed or its machine went down) and the queued ones whose request the
    broker lost. Run by every worker at start and by bookkeeping. Returns how many."""
    now = timezone.now()
    running = VectorFit.objects.filter(status=VectorFit.Status.RUNNING)
    if worker is not None:
        stalled = running.filter(worker=worker)
        reason = f"The worker {worker} restarted while fitting these vectors. Ask for the refit again."
    else:
        stalled = running.filter(started_at__lt=now - timedelta(seconds=settings.FIT_STALL_SECONDS))
        reason = (f"The refit did not finish within {settings.FIT_STALL_SECONDS} s (its worker was stopped or its "
                  "machine went down). Ask for the refit again.")
    reaped = stalled.update(status=VectorFit.Status.FAILED, error=reason, finished_at=now)
    if worker is None:
        lost = dispatch.rows_lost(VectorFit, FAST_FIT_TASK, "train", after_seconds=settings.QUEUED_LOST_SECONDS)
        if lost:
            reaped += VectorFit.objects.filter(pk__in=lost, status=VectorFit.Status.QUEUED).update(
                status=VectorFit.Status.FAILED, finished_at=now,
                error="The request for this refit was lost before a worker took it (the message broker, Redis, "
                      "restarted). Ask for the refit again.")
    return reaped


def fastfit_enqueue(*, fit_id: int) -> bool:
    return dispatch.enqueue_row(FAST_FIT_TASK, VectorFit, fit_id, queue="train")
