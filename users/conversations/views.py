"""Stop and Retry for any reply (chat, comparison or PRISM candidate); the token relay is in ``relay``."""

import redis
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from users.conversations import services
from users.conversations.selectors import reply_for


@require_POST
@login_required
def reply_stop(request, reply_id: int):
    reply = reply_for(request.user, reply_id)
    try:
        services.reply_stop(reply=reply)
    except redis.RedisError:
        return HttpResponse("Could not reach Redis to pass the stop on, so the reply will finish by itself. "
                            "Try Stop again in a moment.", status=503, content_type="text/plain; charset=utf-8")
    if request.htmx:  # said at once, in place of the button; the reply itself ends within a second
        return HttpResponse('<p class="muted stopping" role="status">Stopping…</p>')
    return HttpResponse(status=204)


@require_POST
@login_required
def reply_retry(request, reply_id: int):
    reply = reply_for(request.user, reply_id)
    reply = services.reply_retry(reply=reply)
    if request.htmx:
        return render(request, "chat/detail.html#reply", {"reply": reply})
    return redirect("chat_detail", conversation_id=reply.turn.conversation_id)
