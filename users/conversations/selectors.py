"""Conversations, turns and replies: reads, always scoped to the person asking."""

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404

from users.models import Conversation, Reply, Turn


def conversations_for(user):
    return Conversation.objects.filter(user=user).order_by("-updated_at")


def conversation_for(user, conversation_id: int) -> Conversation:
    """The user's own conversation, or 404 (never 403: no hint that it exists)."""
    return get_object_or_404(Conversation, pk=conversation_id, user=user)


def turns_with_replies(conversation: Conversation) -> list[Turn]:
    return list(
        conversation.turns.order_by("index").prefetch_related(
            Prefetch("replies", queryset=Reply.objects.order_by("position"))
        )
    )


def reply_for(user, reply_id: int) -> Reply:
    return get_object_or_404(Reply.objects.select_related("turn__conversation"), pk=reply_id,
                             turn__conversation__user=user)
