"""Staff browsing of the collected data: conversations and preference pairs, filtered and paged in SQL, so a
page costs the same few queries with 1,500 people as with 5 (``tests/collection/test_browse.py`` pins them)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import CharField, Count, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce, Concat, NullIf

from users.collection.pairs import pair_rejected_replies
from users.models import Conversation, Reply, Turn
from users.prism.ids import WEB_PREFIX

PER_PAGE = 50


@dataclass(frozen=True)
class Filters:
    person: str = ""  # part of a username (imported people: their PRISM id)
    kind: str = ""  # a Conversation.Kind value, or "" for every kind
    since: dt.date | None = None
    until: dt.date | None = None
    min_margin: int = 1

    @classmethod
    def from_query(cls, query) -> "Filters":
        def date(name):
            try:
                return dt.date.fromisoformat(query.get(name, ""))
            except ValueError:
                return None

        try:
            margin = min(99, max(1, int(query.get("min_margin", 1))))
        except (TypeError, ValueError):
            margin = 1
        kind = query.get("kind", "")
        return cls(person=query.get("person", "").strip()[:150],
                   kind=kind if kind in Conversation.Kind.values else "",
                   since=date("since"), until=date("until"), min_margin=margin)

    def query_string(self) -> str:
        """These filters as URL parameters (for the paging links)."""
        from urllib.parse import urlencode

        values = {"person": self.person, "kind": self.kind, "since": self.since or "", "until": self.until or "",
                  "min_margin": self.min_margin if self.min_margin > 1 else ""}
        return urlencode({k: v for k, v in values.items() if v})


def _person_id(conversation: str = ""):
    """The person's id as the Dataset page, the exports and the training data name them (``exported_id`` in
    SQL): their PRISM id if imported, else web-<username>."""
    return Coalesce(NullIf(F(f"{conversation}user__profile__prism_user_id"), Value("")),
                    Concat(Value(WEB_PREFIX), F(f"{conversation}user__username")), output_field=CharField())


def _filtered(qs, filters: Filters, conversation: str = ""):
    """``qs`` (annotated with ``person_id``) narrowed by the filters; ``conversation`` is the path from its rows
    to their conversation."""
    qs = qs.annotate(person_id=_person_id(conversation))
    if filters.person:  # the id shown, or the username behind it
        qs = qs.filter(Q(person_id__icontains=filters.person)
                       | Q(**{f"{conversation}user__username__icontains": filters.person}))
    if filters.kind:
        qs = qs.filter(**{f"{conversation}kind": filters.kind})
    if filters.since:
        qs = qs.filter(**{f"{conversation}created_at__date__gte": filters.since})
    if filters.until:
        qs = qs.filter(**{f"{conversation}created_at__date__lte": filters.until})
    return qs


def conversations(filters: Filters):
    """Conversations, newest first, with their person, opening message and number of turns."""
    opening = Turn.objects.filter(conversation=OuterRef("pk"), index=0).values("user_message")[:1]
    return (_filtered(Conversation.objects.select_related("user"), filters)
            .annotate(opening=Subquery(opening), turn_count=Count("turns"))
            .order_by("-created_at", "-pk"))


def pairs(filters: Filters):
    """Preference pairs (each rejected reply with its turn's chosen one), newest first."""
    chosen = Reply.objects.filter(turn=OuterRef("turn"), chosen=True)
    return (_filtered(pair_rejected_replies(min_margin=filters.min_margin), filters, "turn__conversation__")
            .select_related("turn__conversation__user")
            .annotate(chosen_score=Subquery(chosen.values("score")[:1]),
                      chosen_text=Subquery(chosen.values("content")[:1]))
            .order_by("-pk"))
