"""Blind comparisons: one prompt answered with the person's vectors, the generic vectors and the base model."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from alignment_site.access import participant_required
from users.chat import selectors, services
from users.chat.forms import CompareForm
from users.collection.forms import RatingForm
from users.conversations.selectors import conversation_for
from users.models import Conversation
from users.prism import wording


@never_cache  # Back and Forward show the conversation as it is now, not a stale copy
@login_required
@participant_required
def compare_home(request):
    return _home(request, CompareForm())


def _home(request, form, status=200):
    compares = list(selectors.compares_for(request.user)[:60])
    panel = selectors.personal_panel(request.user)
    return render(request, "chat/compare_home.html", {
        "form": form, "waiting": [c for c in compares if c.waiting],
        "compares": [c for c in compares if not c.waiting][:30],
        "stats": selectors.compare_stats(request.user),
        "can_compare": panel["status"]["run"] is not None,  # no active version: nothing personal to compare
        "panel": panel}, status=status)


@require_POST
@login_required
@participant_required
def compare_start(request):
    form = CompareForm(request.POST)
    if form.is_valid():
        try:
            conversation = services.compare_start(user=request.user, text=form.cleaned_data["message"])
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("compare_detail", conversation_id=conversation.pk)
    return _home(request, form, status=422)


def _own_compare(request, conversation_id: int):
    conversation = conversation_for(request.user, conversation_id)
    if conversation.kind != Conversation.Kind.COMPARE:
        return conversation, None
    return conversation, conversation.turns.prefetch_related("replies").first()


@never_cache  # Back and Forward show the conversation as it is now, not a stale copy
@login_required
@participant_required
def compare_detail(request, conversation_id: int, *, form=None, error=None, status=200):
    conversation, turn = _own_compare(request, conversation_id)
    if turn is None:
        return redirect("chat_detail", conversation_id=conversation.pk)
    candidates = selectors.compare_reveal(turn)
    for c in candidates:  # a refused form keeps the values that were set; the rest stay unset
        c["field"] = f"score-{c['reply'].pk}"
        c["value"] = form.value_of(c["reply"]) if form is not None else None
    rated = any(c["reply"].chosen for c in candidates)
    return render(request, "chat/compare_detail.html", {
        "conversation": conversation, "turn": turn, "candidates": candidates, "rated": rated,
        "finished": all(c["reply"].is_finished for c in candidates), "error": error,
        "wording": wording, "panel": selectors.personal_panel(request.user)}, status=status)


@require_POST
@login_required
@participant_required
def compare_rate(request, conversation_id: int):
    conversation, turn = _own_compare(request, conversation_id)
    if turn is None:
        return redirect("chat_detail", conversation_id=conversation.pk)
    form = RatingForm(request.POST, replies=list(turn.replies.all()))
    if not form.is_valid():
        return compare_detail(request, conversation_id, form=form, error=form.problem(), status=422)
    try:
        services.compare_rate(turn=turn, scores=form.scores(), pick=form.cleaned_data.get("pick"))
    except ValidationError as exc:
        return compare_detail(request, conversation_id, form=form, error=exc.messages[0], status=422)
    return redirect("compare_detail", conversation_id=conversation.pk)
