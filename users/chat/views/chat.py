"""The chat pages: the list, a conversation, sending, the quick rating of a reply and the side panel."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from alignment_site.access import participant_required
from users.chat import selectors as chat_selectors
from users.chat import services
from users.chat.forms import QuickRateForm
from users.conversations.selectors import conversation_for, conversations_for, reply_for, turns_with_replies
from users.models import Conversation


@never_cache  # Back and Forward show the conversation as it is now, not a stale copy
@login_required
@participant_required
def chat_list(request):
    conversations = list(conversations_for(request.user).filter(kind=Conversation.Kind.CHAT))
    return render(request, "chat/list.html", {"conversations": conversations})


@login_required
@participant_required
def chat_new(request):
    """POST: a new chat, or the person's chat that is still empty (no empty conversations pile up).
    GET (a typed or bookmarked address): the list of chats, with its New chat button."""
    if request.method != "POST":
        return redirect("chat_list")
    conversation = services.chat_open_empty(user=request.user)
    return redirect("chat_detail", conversation_id=conversation.pk)


@never_cache  # Back and Forward show the conversation as it is now, not a stale copy
@login_required
@participant_required
def chat_detail(request, conversation_id: int):
    conversation = conversation_for(request.user, conversation_id)
    turns = turns_with_replies(conversation)
    return render(request, "chat/detail.html", {"conversation": conversation, "turns": turns, "error": None,
                                                "newest_turn": _newest(turns)})


def _reply_id(value: str) -> int:
    """A reply id from a form; 0, which names no reply (and is refused), for anything else."""
    return int(value) if value.isdigit() else 0


def _newest(turns) -> int | None:
    """The index of the conversation's last turn: only its reply offers Continue."""
    return turns[-1].index if turns else None


@require_POST
@login_required
@participant_required
def chat_rename(request, conversation_id: int):
    conversation = conversation_for(request.user, conversation_id)
    try:
        services.conversation_rename(conversation=conversation, title=request.POST.get("title", ""))
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    return redirect("chat_detail", conversation_id=conversation.pk)


@require_POST
@login_required
@participant_required
def chat_delete(request, conversation_id: int):
    conversation = conversation_for(request.user, conversation_id)
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the box to confirm: deleting a chat removes its messages and ratings.")
        return redirect("chat_detail", conversation_id=conversation.pk)
    try:
        services.conversation_delete(conversation=conversation)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
        return redirect("chat_detail", conversation_id=conversation.pk)
    messages.success(request, f"Deleted “{conversation}”.")
    return redirect("chat_list")


@require_POST
@login_required
@participant_required
def reply_regenerate(request, reply_id: int):
    reply = reply_for(request.user, reply_id)
    try:
        reply = services.reply_regenerate(reply=reply)
    except ValidationError as exc:
        if request.htmx:
            return HttpResponse(exc.messages[0], status=409, content_type="text/plain; charset=utf-8")
        messages.error(request, exc.messages[0])
    if request.htmx:
        return render(request, "chat/detail.html#reply", {"reply": reply})
    return redirect("chat_detail", conversation_id=reply.turn.conversation_id)


@require_POST
@login_required
@participant_required
def chat_send(request, conversation_id: int):
    conversation = conversation_for(request.user, conversation_id)
    text = request.POST.get("message", "")
    continues = request.POST.get("continues")  # the reply a Continue button belongs to
    try:
        reply = services.personal_chat_send(conversation=conversation, text=text,
                                             continues=_reply_id(continues) if continues else None)
    except ValidationError as exc:
        if request.htmx:
            response = render(request, "chat/detail.html#send-error", {"error": exc.messages[0]}, status=422)
            response["HX-Reswap"] = "innerHTML"
            response["HX-Retarget"] = "#send-error"
            return response
        turns = turns_with_replies(conversation)
        return render(request, "chat/detail.html",
                      {"conversation": conversation, "turns": turns, "error": exc.messages[0],
                       "draft": "" if continues else text, "newest_turn": _newest(turns)},
                      status=422)
    reply.refresh_from_db()  # the enqueue after commit may have marked it failed
    if request.htmx:
        return render(request, "chat/detail.html#turn", {"turn": reply.turn, "replies": [reply]})
    return redirect("chat_detail", conversation_id=conversation.pk)


@require_POST
@login_required
@participant_required
def reply_rate(request, reply_id: int):
    reply = reply_for(request.user, reply_id)
    form = QuickRateForm(request.POST)
    error = None
    if form.is_valid():
        try:
            services.reply_quick_rate(reply=reply, score=form.cleaned_data["score"],
                                      rewrite=form.cleaned_data["rewrite"])
        except ValidationError as exc:
            error = exc.messages[0]
    elif not form.data.get("score"):
        error = "Not rated yet: move the slider to your rating (1 Terrible – 100 Perfect), then save."
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
@participant_required
def personal_panel(request):
    """The vectors notice and the "why" panel; the full block on first load, the panel alone on refresh, and a
    whole page when followed as a link (without JavaScript)."""
    if not request.htmx:
        return render(request, "chat/panel_page.html", {"panel": chat_selectors.personal_panel(request.user)})
    template = "chat/_panel.html" if request.GET.get("part") == "panel" else "chat/_status.html"
    return render(request, template, {"panel": chat_selectors.personal_panel(request.user)})
