"""PRISM-style conversations: start, rate, continue, end."""

from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from alignment_site.access import participant_required
from users.collection import selectors
from users.collection import services as collection
from users.collection.forms import EndForm, RatingForm, SendForm, StartForm
from users.conversations.selectors import reply_for
from users.models import Conversation, Reply
from users.prism import wording
from users.survey.services import survey_is_complete


@never_cache  # Back and Forward show the conversation as it is now, not a stale copy
@login_required
@participant_required
def collect_home(request):
    if not survey_is_complete(request.user):
        return redirect(reverse("survey") + "?next=" + reverse("collect_home"))
    return _home(request, StartForm())


def _home(request, form, status=200):
    conversations = list(selectors.prism_conversations_for(request.user)[:50])
    return render(request, "collect/home.html", {
        "form": form, "conversations": conversations, "progress": selectors.progress_for(request.user),
    }, status=status)


@require_POST
@login_required
@participant_required
def collect_start(request):
    form = StartForm(request.POST)
    if form.is_valid():
        try:
            conversation = collection.prism_conversation_start(
                user=request.user, kind=form.cleaned_data["kind"], text=form.cleaned_data["message"])
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("collect_detail", conversation_id=conversation.pk)
    return _home(request, form, status=422)


@never_cache  # Back and Forward show the conversation as it is now, not a stale copy
@login_required
@participant_required
def collect_detail(request, conversation_id: int):
    conversation = selectors.conversation_visible_to(request.user, conversation_id)
    return _detail(request, conversation)


@dataclass(frozen=True)
class RateItem:
    reply: Reply
    label: str
    field: str  # the slider's name in the rating form
    value: int | None  # what a refused form had sent (kept), or None: the slider starts unset
    tied: bool  # shares the top score: the person picks which one continues


def _detail(request, conversation, *, rating_form=None, send_form=None, end_form=None, error=None, tied=(),
            status=200):
    turns = selectors.prism_turns(conversation)
    current = turns[-1] if turns else None
    is_owner = conversation.user_id == request.user.pk
    open_ = is_owner and conversation.ended_at is None
    can_rate = open_ and current is not None and not current.rated
    rate_items = []  # the turn being rated, one RateItem per candidate
    if can_rate:
        rate_items = [RateItem(reply, label, f"score-{reply.pk}",
                               rating_form.value_of(reply) if rating_form is not None else None, reply.pk in tied)
                      for reply, label in current.candidates]
    return render(request, "collect/detail.html", {
        "conversation": conversation, "turns": turns, "current": current, "is_owner": is_owner,
        "can_rate": can_rate,
        "can_continue": open_ and current is not None and current.rated,
        "rating_form": rating_form, "send_form": send_form or SendForm(), "end_form": end_form or EndForm(),
        "error": error, "rate_items": rate_items, "progress": selectors.progress_for(conversation.user),
        "wording": wording,
    }, status=status)


def _own_open_turn(request, conversation_id: int):
    conversation = selectors.own_prism_conversation(request.user, conversation_id)
    turn = conversation.turns.order_by("-index").first()
    return conversation, turn


@require_POST
@login_required
@participant_required
def collect_rate(request, conversation_id: int):
    conversation, turn = _own_open_turn(request, conversation_id)
    if turn is None:
        return redirect("collect_detail", conversation_id=conversation.pk)
    form = RatingForm(request.POST, replies=list(turn.replies.all()))
    if not form.is_valid():
        return _detail(request, conversation, rating_form=form, error=form.problem(), status=422)
    try:
        collection.turn_rate(turn=turn, scores=form.scores(), pick=form.cleaned_data.get("pick"))
    except collection.TieNeedsPick as exc:
        return _detail(request, conversation, rating_form=form, error=exc.messages[0], tied=exc.tied_ids,
                       status=422)
    except ValidationError as exc:
        return _detail(request, conversation, rating_form=form, error=exc.messages[0], status=422)
    return redirect(reverse("collect_detail", args=[conversation.pk]) + "#next")


@require_POST
@login_required
@participant_required
def collect_continue(request, reply_id: int):
    """Continue a candidate cut at the length limit; htmx swaps the reply in place (it streams on from there)."""
    reply = reply_for(request.user, reply_id)
    if reply.turn.conversation.kind not in Conversation.PRISM_KINDS:
        raise Http404("Only a collection conversation's candidates are continued here.")
    try:
        reply = collection.candidate_continue(reply=reply)
    except ValidationError as exc:
        if request.htmx:
            return HttpResponse(exc.messages[0], status=409, content_type="text/plain; charset=utf-8")
        return _detail(request, reply.turn.conversation, error=exc.messages[0], status=409)
    if request.htmx:
        return render(request, "chat/detail.html#reply", {"reply": reply})
    return redirect(reverse("collect_detail", args=[reply.turn.conversation_id]) + f"#candidate-{reply.pk}")


@require_POST
@login_required
@participant_required
def collect_send(request, conversation_id: int):
    conversation = selectors.own_prism_conversation(request.user, conversation_id)
    form = SendForm(request.POST)
    if form.is_valid():
        try:
            turn = collection.prism_turn_send(conversation=conversation, text=form.cleaned_data["message"])
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect(reverse("collect_detail", args=[conversation.pk]) + f"#turn-{turn.index}")
    return _detail(request, conversation, send_form=form, status=422)


@require_POST
@login_required
@participant_required
def collect_end(request, conversation_id: int):
    conversation = selectors.own_prism_conversation(request.user, conversation_id)
    form = EndForm(request.POST)
    if form.is_valid():
        try:
            collection.prism_conversation_end(conversation=conversation, **form.answers())
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            from django.contrib import messages  # the only message this module sends

            progress = selectors.progress_for(request.user)
            messages.success(request, f"Conversation finished — thank you. {progress['done']} of "
                                      f"{progress['target']} done.")
            return redirect("collect_home")
    return _detail(request, conversation, end_form=form, status=422)
