"""The raters page's rows and the flagged people a run can leave out, read from the ratings in the database
(``users.raters`` works the figures out)."""

from __future__ import annotations

from collections import defaultdict

from django.contrib.auth import get_user_model
from django.db.models import Max

from users.models import Reply, SyntheticPersona, Turn
from users.raters import RatedTurn, RaterQuality, rater_quality


def rater_rows(users=None) -> list[tuple[object, RaterQuality]]:
    """(user, figures) of everyone with a rated turn (of ``users`` when given), flagged people first."""
    replies = Reply.objects.filter(score__isnull=False).order_by("turn_id", "position")
    turns = Turn.objects.filter(replies__score__isnull=False).distinct()
    if users is not None:
        replies = replies.filter(turn__conversation__user__in=users)
        turns = turns.filter(conversation__user__in=users)
    finished = dict(turns.annotate(last=Max("replies__finished_at")).values_list("pk", "last"))
    rated = dict(turns.values_list("pk", "rated_at"))
    texts: dict[int, list[tuple[str, int]]] = defaultdict(list)
    owner: dict[int, int] = {}
    for turn_id, user_id, content, score in replies.values_list("turn_id", "turn__conversation__user_id",
                                                                "content", "score"):
        texts[turn_id].append((content, score))
        owner[turn_id] = user_id
    people: dict[int, list[RatedTurn]] = defaultdict(list)
    for turn_id, rows in texts.items():
        seconds = None
        if rated.get(turn_id) and finished.get(turn_id):
            seconds = (rated[turn_id] - finished[turn_id]).total_seconds()
        people[owner[turn_id]].append(RatedTurn([t for t, _ in rows], [s for _, s in rows], seconds))
    groups = dict(SyntheticPersona.objects.filter(user_id__in=list(people)).values_list("user_id", "group"))
    accounts = get_user_model().objects.in_bulk(list(people))
    found = rater_quality({pk: (groups.get(pk) or None, turns) for pk, turns in people.items()})
    return [(accounts[row.person], row) for row in found]


def flagged_people(users=None) -> set[int]:
    """The database ids of the people with a flag."""
    return {user.pk for user, row in rater_rows(users) if row.flags}
