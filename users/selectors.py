"""Reads, always scoped to the person asking."""

from dataclasses import dataclass

from django.db.models import Count, F, Prefetch, Q
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


# --- PRISM collection ---------------------------------------------------------

def profile_for(user):
    from users.models import Profile

    return Profile.objects.filter(user=user).first()


def prism_conversations_for(user):
    return Conversation.objects.filter(user=user, kind__in=Conversation.PRISM_KINDS).order_by("-updated_at")


def progress_for(user) -> dict:
    from django.conf import settings

    done = prism_conversations_for(user).filter(ended_at__isnull=False).count()
    target = settings.COLLECTION_TARGET
    return {"done": done, "target": target, "percent": min(100, round(100 * done / target))}


def conversation_visible_to(user, conversation_id: int) -> Conversation:
    """Participants see their own conversations; staff see everyone's (read-only)."""
    qs = Conversation.objects.select_related("user")
    if not user.is_staff:
        qs = qs.filter(user=user)
    return get_object_or_404(qs, pk=conversation_id, kind__in=Conversation.PRISM_KINDS)


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
        opening = turn.index == 0
        labels = [f"Reply {r.position + 1}" if opening else f"Reply {chr(65 + r.position)}" for r in replies]
        views.append(TurnView(turn=turn, candidates=list(zip(replies, labels)),
                              rated=any(r.chosen for r in replies), finished=all(r.is_finished for r in replies)))
    return views


# --- dataset pages (staff) ----------------------------------------------------

def dataset_counts(*, min_margin: int = 1) -> dict:
    from users.models import Profile
    from users.pairs import pair_rejected_replies

    return {
        "people": Profile.objects.filter(completed_at__isnull=False).count(),
        "conversations": Conversation.objects.filter(kind__in=Conversation.PRISM_KINDS).count(),
        "rated_replies": Reply.objects.filter(score__isnull=False).count(),
        "pairs": pair_rejected_replies(min_margin=min_margin).count(),
    }


def score_histogram() -> list[dict]:
    """Rated replies in ten bands (1–10, 11–20, … 91–100), with a bar width in percent."""
    rows = (Reply.objects.filter(score__isnull=False).annotate(band=(F("score") - 1) / 10)
            .values("band").annotate(n=Count("id")))
    counts = {row["band"]: row["n"] for row in rows}
    top = max(counts.values(), default=0) or 1
    return [{"label": f"{b * 10 + 1}–{b * 10 + 10}", "count": counts.get(b, 0),
             "width": round(100 * counts.get(b, 0) / top)} for b in range(10)]


def people_rows(users_page, *, min_margin: int = 1) -> list[dict]:
    """One row per person on the page: conversations, rated replies and pairs (3 queries in all)."""
    from users.pairs import pair_counts_by_user
    from users.prism_io import exported_id

    users = list(users_page)
    ids = [u.pk for u in users]
    rated = dict(Reply.objects.filter(score__isnull=False, turn__conversation__user__in=ids)
                 .values_list("turn__conversation__user").annotate(n=Count("id")))
    pairs = pair_counts_by_user(min_margin=min_margin, users=ids)
    return [{"user": u, "user_id": exported_id(u.prism_user_id, u.username), "conversations": u.n_conversations,
             "rated": rated.get(u.pk, 0), "pairs": pairs.get(u.pk, 0)} for u in users]


def people_with_data():
    from django.contrib.auth import get_user_model

    return (get_user_model().objects.filter(profile__completed_at__isnull=False)
            .annotate(n_conversations=Count("conversations", filter=Q(conversations__kind__in=Conversation.PRISM_KINDS)),
                      prism_user_id=F("profile__prism_user_id"))
            .order_by("pk"))
