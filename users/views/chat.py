from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from users import personal, selectors, services
from users.models import Conversation


@login_required
def chat_list(request):
    conversations = list(selectors.conversations_for(request.user).filter(kind=Conversation.Kind.CHAT))
    return render(request, "chat/list.html", {"conversations": conversations})


@require_POST
@login_required
def chat_new(request):
    conversation = services.conversation_create(user=request.user)
    return redirect("chat_detail", conversation_id=conversation.pk)


@login_required
def chat_detail(request, conversation_id: int):
    conversation = selectors.conversation_for(request.user, conversation_id)
    turns = selectors.turns_with_replies(conversation)
    return render(request, "chat/detail.html", {"conversation": conversation, "turns": turns, "error": None})


@require_POST
@login_required
def chat_send(request, conversation_id: int):
    conversation = selectors.conversation_for(request.user, conversation_id)
    text = request.POST.get("message", "")
    try:
        reply = personal.personal_chat_send(conversation=conversation, text=text)
    except ValidationError as exc:
        if request.htmx:
            response = render(request, "chat/detail.html#send-error", {"error": exc.messages[0]}, status=422)
            response["HX-Reswap"] = "innerHTML"
            response["HX-Retarget"] = "#send-error"
            return response
        turns = selectors.turns_with_replies(conversation)
        return render(request, "chat/detail.html",
                      {"conversation": conversation, "turns": turns, "error": exc.messages[0], "draft": text},
                      status=422)
    reply.refresh_from_db()  # the enqueue after commit may have marked it failed
    if request.htmx:
        return render(request, "chat/detail.html#turn", {"turn": reply.turn, "replies": [reply]})
    return redirect("chat_detail", conversation_id=conversation.pk)


@require_POST
@login_required
def reply_stop(request, reply_id: int):
    reply = selectors.reply_for(request.user, reply_id)
    services.reply_stop(reply=reply)
    return HttpResponse(status=204)


@require_POST
@login_required
def reply_retry(request, reply_id: int):
    reply = selectors.reply_for(request.user, reply_id)
    reply = services.reply_retry(reply=reply)
    if request.htmx:
        return render(request, "chat/detail.html#reply", {"reply": reply})
    return redirect("chat_detail", conversation_id=reply.turn.conversation_id)
