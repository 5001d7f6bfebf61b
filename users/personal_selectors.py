"""Personalized chat (issue 6): reads for the person asking. No torch here."""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache

from django.conf import settings
from django.db.models import Avg, Count, Q

from users.models import Conversation, Reply, VectorFit
from users.pairs import pair_counts_by_user, pair_rejected_replies
from users.prism_io import exported_user_id


def active_run():
    """The TrainingRun serving chat (newest activation of a completed run with a saved model), or None."""
    from trainer.models import Activation

    activation = (Activation.objects.filter(run__status="completed").exclude(run__artifacts="")
                  .select_related("run").first())
    return activation.run if activation else None


@lru_cache(maxsize=16)
def trained_users(run_id: int, artifacts: str) -> frozenset[str]:
    """Exported user ids that have their own row in a version (read once from its users.json)."""
    try:
        data = json.loads((settings.ARTIFACTS_DIR / artifacts / "users.json").read_text())
    except (OSError, ValueError):
        return frozenset()
    return frozenset(data.get("users", {}))


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
    if (run.config or {}).get("user_model") == "none":
        return {"run": run, "kind": "none"}
    fit = VectorFit.objects.filter(user=user, run=run).first()
    done = VectorFit.objects.filter(user=user, run=run, status=VectorFit.Status.DONE).first()
    _, fresh = new_pairs_since_fit(user=user, run=run)
    more = max(0, settings.FASTFIT_EVERY_PAIRS - fresh)
    profile = getattr(user, "profile", None)
    if done is not None:
        kind = "fitted"
    elif exported_user_id(user, profile) in trained_users(run.pk, run.artifacts):
        kind = "personal"
    else:
        kind = "generic"
    return {"run": run, "kind": kind, "fit": done, "pending": fit if fit and fit.status in (
        VectorFit.Status.QUEUED, VectorFit.Status.RUNNING) else None, "more_needed": more,
        "every": settings.FASTFIT_EVERY_PAIRS}


# --- "why it behaves so" ------------------------------------------------------------------------------

def _syllables(word: str) -> int:
    groups = re.findall(r"[aeiouy]+", word.lower())
    return max(1, len(groups) - (1 if word.lower().endswith("e") and len(groups) > 1 else 0))


def text_style(texts: list[str]) -> dict | None:
    """Average length in words and a reading-level proxy (Flesch–Kincaid grade) over ``texts``."""
    texts = [t for t in texts if t.strip()]
    if not texts:
        return None
    words = [re.findall(r"[A-Za-z']+", t) for t in texts]
    n_words = sum(len(w) for w in words) or 1
    sentences = sum(max(1, len(re.findall(r"[.!?]+", t))) for t in texts)
    syllables = sum(_syllables(x) for w in words for x in w)
    grade = 0.39 * n_words / sentences + 11.8 * syllables / n_words - 15.59
    return {"n": len(texts), "words": round(n_words / len(texts), 1), "grade": round(grade, 1)}


def nearest_on_map(user_map: list[dict], user_id: str, k: int = 3) -> tuple[dict | None, list[dict]]:
    """The person's point on the user map and their k nearest neighbours (generic row excluded)."""
    me = next((p for p in user_map if p.get("user_id") == user_id and not p.get("generic")), None)
    if me is None:
        return None, []
    others = [p for p in user_map if p is not me and not p.get("generic")]
    ranked = sorted(others, key=lambda p: math.dist((p["x"], p["y"]), (me["x"], me["y"])))
    return me, [{**p, "distance": round(math.dist((p["x"], p["y"]), (me["x"], me["y"])), 3)} for p in ranked[:k]]


def map_points(user_map: list[dict], me: dict | None, neighbours: list[dict]) -> list[dict]:
    """Points scaled into a 0..100 box for a small SVG; the person and neighbours flagged."""
    if not user_map:
        return []
    xs, ys = [p["x"] for p in user_map], [p["y"] for p in user_map]
    span = lambda v: (min(v), (max(v) - min(v)) or 1.0)  # noqa: E731
    (x0, dx), (y0, dy) = span(xs), span(ys)
    near = {p["user_id"] for p in neighbours}
    return [{"x": round(5 + 90 * (p["x"] - x0) / dx, 1), "y": round(95 - 90 * (p["y"] - y0) / dy, 1),
             "me": me is not None and p is me, "near": p["user_id"] in near, "generic": p.get("generic", False),
             "label": p["user_id"]} for p in user_map]


def personal_panel(user) -> dict:
    """Everything the side panel shows, in a fixed handful of queries."""
    status = vectors_status(user)
    run = status["run"]
    profile = getattr(user, "profile", None)
    user_id = exported_user_id(user, profile)
    panel = {"status": status, "user_id": user_id, "pairs": user_pair_count(user), "accuracy": None,
             "me": None, "neighbours": [], "points": [],
             "stated": sorted((profile.stated_prefs or {}).items()) if profile and profile.stated_prefs else [],
             "style": {}}
    if run is not None:
        panel["accuracy"] = next((row for row in (run.evaluation or {}).get("per_user", [])
                                  if row.get("user_id") == user_id), None)
        me, neighbours = nearest_on_map(run.user_map or [], user_id)
        panel.update(me=me, neighbours=neighbours, points=map_points(run.user_map or [], me, neighbours))
    replies = (Reply.objects.filter(turn__conversation__user=user, status=Reply.Status.DONE)
               .exclude(source="rewrite").values_list("serving", "content"))
    by_kind: dict[str, list[str]] = {}
    for serving, content in replies:
        kind = (serving or {}).get("vectors")
        if kind in ("personal", "fitted"):
            by_kind.setdefault("yours", []).append(content)
        elif kind == "generic":
            by_kind.setdefault("generic", []).append(content)
        elif kind == "none":
            by_kind.setdefault("base", []).append(content)
    panel["style"] = {k: text_style(v) for k, v in by_kind.items()}
    return panel


def compares_for(user):
    return Conversation.objects.filter(user=user, kind=Conversation.Kind.COMPARE).order_by("-created_at")


def compare_reveal(turn) -> list[dict]:
    """The candidates of a comparison; which is which only once they are rated."""
    from users.personal import COMPARE_LABELS

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
