"""The staff dataset pages: counts, the score histogram and the people table (a fixed number of queries)."""

from django.contrib.auth import get_user_model
from django.db.models import Count, F, Q

from users.collection.pairs import pair_counts_by_user, pair_rejected_replies
from users.models import Conversation, Profile, Reply
from users.prism.ids import exported_id, web_username


def dataset_counts(*, min_margin: int = 1) -> dict:
    people = Profile.objects.aggregate(people=Count("pk", filter=Q(completed_at__isnull=False)),
                                       withdrawn=Count("pk", filter=Q(withdrawn_at__isnull=False)))
    return {
        "people": people["people"], "withdrawn": people["withdrawn"],
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
    users = list(users_page)
    ids = [u.pk for u in users]
    rated = dict(Reply.objects.filter(score__isnull=False, turn__conversation__user__in=ids)
                 .values_list("turn__conversation__user").annotate(n=Count("id")))
    pairs = pair_counts_by_user(min_margin=min_margin, users=ids)
    return [{"user": u, "user_id": exported_id(u.prism_user_id, u.username), "conversations": u.n_conversations,
             "rated": rated.get(u.pk, 0), "pairs": pairs.get(u.pk, 0), "withdrawn_at": u.withdrawn_at}
            for u in users]


def people_with_data():
    return (get_user_model().objects.filter(profile__completed_at__isnull=False)
            .annotate(n_conversations=Count("conversations",
                                            filter=Q(conversations__kind__in=Conversation.PRISM_KINDS)),
                      prism_user_id=F("profile__prism_user_id"), withdrawn_at=F("profile__withdrawn_at"))
            .order_by("pk"))


def people_named(names: list[str]) -> tuple[list, list[str]]:
    """The accounts behind each name, which may be the id the exports and training data carry
    (``web-<username>``, or an imported person's PRISM ``user_id``) or a username, the exported id winning
    when a name is both; and the names that match nobody. One query."""
    wanted = set(names)
    candidates = list(get_user_model().objects.filter(
        Q(username__in={web_username(n) or n for n in wanted}) | Q(profile__prism_user_id__in=wanted))
        .select_related("profile"))
    exported = {exported_id(getattr(getattr(u, "profile", None), "prism_user_id", None), u.username): u
                for u in candidates}
    by_username = {u.username: u for u in candidates}
    found = {n: exported.get(n) or by_username.get(n) for n in wanted}
    people = {u.pk: u for u in found.values() if u is not None}
    return list(people.values()), sorted(n for n, u in found.items() if u is None)
