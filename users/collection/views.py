"""PRISM-style conversations: start, rate, continue, end."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from users.collection import selectors
from users.collection import services as collection
from users.collection.forms import EndForm, RatingForm, SendForm, StartForm
from users.conversations.selectors import conversation_for
from users.prism import wording
from users.survey.services import survey_is_complete


@never_cache  # Back and Forward show the conversation as it is now, not a stale copy
@login_required
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
def collect_detail(request, conversation_id: int):
    conversation = selectors.conversation_visible_to(request.user, conversation_id)
    return _detail(request, conversation)


def _detail(request, conversation, *, rating_form=None, send_form=None, end_form=None, error=None, tied=(),
            status=200):
    turns = selectors.prism_turns(conversation)
    current = turns[-1] if turns else None
    is_owner = conversation.user_id == request.user.pk
    open_ = is_owner and conversation.ended_at is None
    rate_items = []
    if current is not None and not current.rated:
        posted = request.POST if rating_form is not None else {}
        rate_items = [(reply, label, posted.get(f"score-{reply.pk}") or 50, reply.pk in tied)
                      for reply, label in current.candidates if reply.status != "failed"]
    return render(request, "collect/detail.html", {
        "conversation": conversation, "turns": turns, "current": current, "is_owner": is_owner,
        "can_rate": open_ and current is not None and not current.rated,
        "can_continue": open_ and current is not None and current.rated,
        "rating_form": rating_form, "send_form": send_form or SendForm(), "end_form": end_form or EndForm(),
        "error": error, "rate_items": rate_items, "progress": selectors.progress_for(conversation.user),
        "wording": wording,
    }, status=status)


def _own_open_turn(request, conversation_id: int):
    conversation = conversation_for(request.user, conversation_id)
    turn = conversation.turns.order_by("-index").first()
    return conversation, turn


@require_POST
@login_required
def collect_rate(request, conversation_id: int):
    conversation, turn = _own_open_turn(request, conversation_id)
    if turn is None:
        return redirect("collect_detail", conversation_id=conversation.pk)
    form = RatingForm(request.POST, replies=list(turn.replies.all()))
    if not form.is_valid():
        return _detail(request, conversation, rating_form=form, error="Rate every reply from 1 to 100.",
                       status=422)
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
def collect_send(request, conversation_id: int):
    conversation = conversation_for(request.user, conversation_id)
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
def collect_end(request, conversation_id: int):
    conversation = conversation_for(request.user, conversation_id)
    form = EndForm(request.POST)
    if form.is_valid():
        try:
            collection.prism_conversation_end(conversation=conversation, **form.answers())
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("collect_home")
    return _detail(request, conversation, end_form=form, status=422)
