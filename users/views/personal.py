"""Personalized chat pages (issue 6): blind comparisons, quick ratings, the side panel."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from users import personal, personal_selectors, prism_wording, selectors
from users.forms import CompareForm, QuickRateForm, RatingForm
from users.models import Conversation


@login_required
def compare_home(request):
    return _home(request, CompareForm())


def _home(request, form, status=200):
    return render(request, "personal/compare_home.html", {
        "form": form, "compares": list(personal_selectors.compares_for(request.user)[:30]),
        "stats": personal_selectors.compare_stats(request.user),
        "panel": personal_selectors.personal_panel(request.user)}, status=status)


@require_POST
@login_required
def compare_start(request):
    form = CompareForm(request.POST)
    if form.is_valid():
        try:
            conversation = personal.compare_start(user=request.user, text=form.cleaned_data["message"])
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("compare_detail", conversation_id=conversation.pk)
    return _home(request, form, status=422)


def _own_compare(request, conversation_id: int):
    conversation = selectors.conversation_for(request.user, conversation_id)
    if conversation.kind != Conversation.Kind.COMPARE:
        return conversation, None
    return conversation, conversation.turns.prefetch_related("replies").first()


@login_required
def compare_detail(request, conversation_id: int, *, form=None, error=None, status=200):
    conversation, turn = _own_compare(request, conversation_id)
    if turn is None:
        return redirect("chat_detail", conversation_id=conversation.pk)
    candidates = personal_selectors.compare_reveal(turn)
    rated = any(c["reply"].chosen for c in candidates)
    return render(request, "personal/compare_detail.html", {
        "conversation": conversation, "turn": turn, "candidates": candidates, "rated": rated,
        "finished": all(c["reply"].is_finished for c in candidates), "error": error,
        "wording": prism_wording, "panel": personal_selectors.personal_panel(request.user)}, status=status)


@require_POST
@login_required
def compare_rate(request, conversation_id: int):
    conversation, turn = _own_compare(request, conversation_id)
    if turn is None:
        return redirect("chat_detail", conversation_id=conversation.pk)
    form = RatingForm(request.POST, replies=list(turn.replies.all()))
    if not form.is_valid():
        return compare_detail(request, conversation_id, form=form, error="Rate every reply from 1 to 100.",
                              status=422)
    try:
        personal.compare_rate(turn=turn, scores=form.scores(), pick=form.cleaned_data.get("pick"))
    except ValidationError as exc:
        return compare_detail(request, conversation_id, form=form, error=exc.messages[0], status=422)
    return redirect("compare_detail", conversation_id=conversation.pk)


@require_POST
@login_required
def reply_rate(request, reply_id: int):
    reply = selectors.reply_for(request.user, reply_id)
    form = QuickRateForm(request.POST)
    error = None
    if form.is_valid():
        try:
            personal.reply_quick_rate(reply=reply, score=form.cleaned_data["score"],
                                      rewrite=form.cleaned_data["rewrite"])
        except ValidationError as exc:
            error = exc.messages[0]
    else:
        error = "Rate the reply from 1 (Terrible) to 100 (Perfect)."
    if request.htmx:
        reply.refresh_from_db()
        response = render(request, "chat/detail.html#rating", {"reply": reply, "rate_error": error},
                          status=422 if error else 200)
        response["HX-Trigger"] = "refresh"  # the side panel shows the pending refit
        return response
    return redirect("chat_detail", conversation_id=reply.turn.conversation_id)


@login_required
def panel(request):
    """The vectors notice and the "why" panel; the full block on first load, the panel alone on refresh."""
    template = "personal/_panel.html" if request.GET.get("part") == "panel" else "personal/_status.html"
    return render(request, template, {"panel": personal_selectors.personal_panel(request.user)})
