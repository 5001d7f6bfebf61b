"""PRISM-style collection: reads, scoped to the person asking (staff read everyone's)."""

from dataclasses import dataclass

from django.conf import settings
from django.shortcuts import get_object_or_404

from alignment_site import glossary
from users.conversations.selectors import turns_with_replies
from users.models import Conversation, Turn


def prism_conversations_for(user):
    return Conversation.objects.filter(user=user, kind__in=Conversation.PRISM_KINDS).order_by("-updated_at")


def progress_for(user) -> dict:
    done = prism_conversations_for(user).filter(ended_at__isnull=False).count()
    target = settings.COLLECTION_TARGET
    return {"done": done, "target": target, "percent": min(100, round(100 * done / target))}


def own_prism_conversation(user, conversation_id: int) -> Conversation:
    """The person's own PRISM conversation, or 404: a chat or a blind comparison (whose ratings are judged by
    their own pages) is not rated, continued or ended through the collection's forms."""
    return get_object_or_404(Conversation, pk=conversation_id, user=user, kind__in=Conversation.PRISM_KINDS)


def conversation_visible_to(user, conversation_id: int) -> Conversation:
    """Participants see their own PRISM conversations here; staff see everyone's of every kind (read-only)."""
    qs = Conversation.objects.select_related("user")
    if not user.is_staff:
        return get_object_or_404(qs, pk=conversation_id, user=user, kind__in=Conversation.PRISM_KINDS)
    return get_object_or_404(qs, pk=conversation_id)


@dataclass
class TurnView:
    turn: Turn
    candidates: list  # [(reply, label)]
    rated: bool
    finished: bool


def prism_turns(conversation: Conversation) -> list[TurnView]:
    views = []
    for turn in turns_with_replies(conversation):
        replies = list(turn.replies.all())
        labels = [glossary.reply_label(r.position) for r in replies]
        views.append(TurnView(turn=turn, candidates=list(zip(replies, labels)),
                              rated=any(r.chosen for r in replies), finished=all(r.is_finished for r in replies)))
    return views
