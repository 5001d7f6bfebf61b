"""What a newcomer's onboarding shows: whether they are asked at all, the question now, their progress, and their
point on the version's map of users."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.conf import settings

from trainer.core.placement import Answer, Estimate, PoolPair, Space, prior
from trainer.pools import pool_document, ready_pool
from trainer.selectors import active_run, trained_users
from users.models import Onboarding
from users.prism.ids import exported_user_id


@dataclass(frozen=True)
class Pool:
    """A ready pool read back: its space, its questions as placement sees them, their texts and the map axes."""
    space: Space
    pairs: dict[str, PoolPair]
    texts: dict[str, dict]
    axes: list[list[float]] | None


def pool_for(run) -> Pool | None:
    pool = ready_pool(run.pk) if run is not None else None
    if pool is None:
        return None
    document = pool_document(pool)
    return Pool(Space(tuple(document["spread"])),
                {q["key"]: PoolPair(q["key"], q["margin"], tuple(q["slope"])) for q in document["questions"]},
                {q["key"]: q for q in document["questions"]}, document.get("axes"))


def is_newcomer(user, run) -> bool:
    """The active version was not trained on this person's ratings (and has vectors to place them with)."""
    if run is None or not run.has_vectors:
        return False
    return exported_user_id(user, getattr(user, "profile", None)) not in trained_users(run.pk, run.artifacts)


def onboarding_due(user) -> bool:
    """The person is a newcomer to the active version, its pool is ready and they have not finished with it."""
    run = active_run()
    if not is_newcomer(user, run) or ready_pool(run.pk) is None:
        return False
    return not Onboarding.objects.filter(user=user, run=run, status=Onboarding.Status.FINISHED).exists()


def answers_of(onboarding: Onboarding) -> list[Answer]:
    return [Answer(a["key"], a["a_better"]) for a in onboarding.answers]


def estimate_of(onboarding: Onboarding, pool: Pool) -> Estimate:
    if not onboarding.coordinates:
        return prior(pool.space)
    return Estimate(np.asarray(onboarding.coordinates, dtype=np.float64),
                    np.asarray(onboarding.covariance, dtype=np.float64))


def question(onboarding: Onboarding, pool: Pool) -> dict | None:
    """The question shown now: its prompt and the two replies in the order shown (left, right)."""
    if onboarding.status != Onboarding.Status.ASKING or onboarding.asking not in pool.texts:
        return None
    q = pool.texts[onboarding.asking]
    left, right = (q["a"], q["b"]) if onboarding.a_first else (q["b"], q["a"])
    return {"key": q["key"], "prompt": q["prompt"], "sides": [("left", left), ("right", right)]}


def progress(onboarding: Onboarding) -> dict:
    answered, target = len(onboarding.answers), settings.ONBOARDING_QUESTIONS
    return {"answered": answered, "target": target, "number": min(answered + 1, target),
            "percent": min(100, round(100 * answered / target))}


def map_point(onboarding: Onboarding, pool: Pool | None) -> dict | None:
    """The newcomer on the version's map of users (coordinates times the pool's axes), or None."""
    if pool is None or not pool.axes:
        return None
    coordinates = onboarding.coordinates or [0.0] * len(pool.axes)  # before any answer: the seen people's mean
    x = sum(w * a[0] for w, a in zip(coordinates, pool.axes))
    y = sum(w * a[1] for w, a in zip(coordinates, pool.axes))
    return {"x": round(x, 5), "y": round(y, 5)}


def map_with_newcomer(user, onboarding: Onboarding, pool: Pool | None) -> tuple[list[dict], str]:
    """The version's map with the newcomer's point added (their id names it), and that id."""
    user_id = exported_user_id(user, getattr(user, "profile", None))
    points = list(onboarding.run.user_map or [])
    point = map_point(onboarding, pool)
    if point is not None and not any(p.get("user_id") == user_id for p in points):
        points.append({"user_id": user_id, **point, "generic": False})
    return points, user_id
