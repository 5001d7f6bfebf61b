"""The participant's chat: reads for the person asking (their vectors, the side panel, comparisons). No torch here."""

from __future__ import annotations


from django.conf import settings
from django.db.models import Avg, Count, Q

from alignment_site import glossary
from trainer.pools import ready_pool
from trainer.selectors import active_run, trained_users
from users.chat.style import map_points, nearest_on_map, text_style
from users.collection.pairs import pair_counts_by_user, pair_rejected_replies
from users.models import Conversation, Onboarding, Reply, VectorFit
from users.newcomer.selectors import map_with_newcomer, pool_for
from users.prism.ids import exported_user_id

# The three columns of a comparison; the page shows them as Reply 1-3 in a random order.
# The prefix keeps them apart from chat replies (which get the quick rating); the worker drops it.
COMPARE_SOURCES = ("compare-personal", "compare-generic", "compare-base")
COMPARE_LABELS = {"compare-personal": glossary.VECTORS["own"], "compare-generic": glossary.VECTORS["generic"],
                  "compare-base": glossary.VECTORS["base"], "compare-baseline": glossary.VECTORS["baseline"]}


def user_pair_count(user) -> int:
    return pair_counts_by_user(users=[user.pk]).get(user.pk, 0)


def new_pairs_since_fit(*, user, run) -> tuple[int, int]:
    """(pairs now, pairs not yet used by a refit on ``run``): counted from the last refit that was
    asked for, else from the pairs that existed when the version was trained."""
    total = user_pair_count(user)
    last = VectorFit.objects.filter(user=user, run=run).exclude(status=VectorFit.Status.FAILED).first()
    if last is not None:
        return total, total - last.pairs_total
    before = pair_rejected_replies(users=[user.pk]).filter(created_at__lte=run.created_at).count()
    return total, total - before


def vectors_status(user) -> dict:
    """What the chat page says about the person's vectors in the active version."""
    run = active_run()
    if run is None:
        return {"run": None, "kind": "none"}
    if not run.has_vectors:
        return {"run": run, "kind": "none"}
    fit = VectorFit.objects.filter(user=user, run=run).first()
    done = VectorFit.objects.filter(user=user, run=run, status=VectorFit.Status.DONE, outranked=False).first()
    _, fresh = new_pairs_since_fit(user=user, run=run)
    more = max(0, settings.FASTFIT_EVERY_PAIRS - fresh)
    profile = getattr(user, "profile", None)
    onboarding, questions = None, False
    if done is not None:
        kind = "fitted"
    elif exported_user_id(user, profile) in trained_users(run.pk, run.artifacts):
        kind = "personal"
    else:  # a newcomer: placed by their first answers once they gave some; asked while the pool is ready
        onboarding = Onboarding.objects.filter(user=user, run=run).select_related("run").first()
        kind = "onboarding" if onboarding is not None and onboarding.answers else "generic"
        questions = ((onboarding is None or onboarding.status == Onboarding.Status.ASKING)
                     and ready_pool(run.pk) is not None)
    return {"run": run, "kind": kind, "fit": done, "onboarding": onboarding,
            "answers": len(onboarding.answers) if onboarding is not None else 0,
            "questions": questions, "pending": fit if fit and fit.status in (
        VectorFit.Status.QUEUED, VectorFit.Status.RUNNING) else None, "more_needed": more,
        "every": settings.FASTFIT_EVERY_PAIRS}


def personal_panel(user) -> dict:
    """Everything the side panel shows, in a fixed handful of queries."""
    status = vectors_status(user)
    run = status["run"]
    profile = getattr(user, "profile", None)
    user_id = exported_user_id(user, profile)
    panel = {"status": status, "user_id": user_id, "pairs": user_pair_count(user), "accuracy": None,
             "me": None, "neighbours": [], "points": [],
             "stated": sorted((profile.stated_prefs or {}).items()) if profile and profile.stated_prefs else [],
             "style": {}, "evaluation": None}
    if run is not None:
        panel["accuracy"] = next((row for row in (run.evaluation or {}).get("per_user", [])
                                  if row.get("user_id") == user_id), None)
        user_map = run.user_map or []
        if status["kind"] == "onboarding":  # placed by their first answers: shown where those put them
            user_map, _ = map_with_newcomer(user, status["onboarding"], pool_for(run))
        me, neighbours = nearest_on_map(user_map, user_id)
        points = map_points(user_map, me, neighbours, named=user.is_staff)
        if not user.is_staff:  # where others sit is theirs: a participant learns distances, never names
            neighbours = [{"distance": n["distance"]} for n in neighbours]
        panel.update(me=me, neighbours=neighbours, points=points)
        from trainer.personalization.report import person_row

        panel["evaluation"] = person_row(run=run, person=user_id)  # their own row only, never others
    replies = (Reply.objects.filter(turn__conversation__user=user, status=Reply.Status.DONE)
               .exclude(source="rewrite").values_list("serving", "content"))
    by_kind: dict[str, list[str]] = {}
    for serving, content in replies:
        kind = (serving or {}).get("vectors")
        if kind in ("personal", "fitted", "onboarding"):
            by_kind.setdefault("yours", []).append(content)
        elif kind == "generic":
            by_kind.setdefault("generic", []).append(content)
        elif kind == "none":
            by_kind.setdefault("base", []).append(content)
    panel["style"] = {k: text_style(v) for k, v in by_kind.items()}
    return panel


def compares_for(user):
    """The person's comparisons, newest first; ``waiting``: one a personalization evaluation left for them to
    judge that they have not rated yet."""
    from django.db.models import Exists, OuterRef

    from trainer.models import EvaluationItem

    return (Conversation.objects.filter(user=user, kind=Conversation.Kind.COMPARE)
            .annotate(waiting=Exists(EvaluationItem.objects.filter(conversation=OuterRef("pk"), outcomes__isnull=True)))
            .order_by("-waiting", "-created_at"))


def compare_reveal(turn) -> list[dict]:
    """The candidates of a comparison; which is which only once they are rated."""
    replies = list(turn.replies.all())
    rated = any(r.chosen for r in replies)
    return [{"reply": r, "label": f"Reply {r.position + 1}",
             "source": COMPARE_LABELS.get(r.source, r.source) if rated else None} for r in replies]


def compare_stats(user) -> dict:
    """How often each column won the person's blind comparisons."""
    rows = (Reply.objects.filter(turn__conversation__user=user, turn__conversation__kind=Conversation.Kind.COMPARE,
                                 score__isnull=False).values("source")
            .annotate(avg=Avg("score"), wins=Count("id", filter=Q(chosen=True))))
    return {r["source"]: {"avg": round(r["avg"], 1), "wins": r["wins"]} for r in rows}
