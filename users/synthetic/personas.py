"""Synthetic populations: two opposing groups on a style dimension (e.g. 70 % prefer detail, 30 % brevity,
as in the paper's TL;DR setup), drawn from a seed."""

from __future__ import annotations

import random

from users.synthetic.rule import DIMENSIONS, Persona


def sample_population(n_users: int, *, dimension: str = "length", majority_pole: str | None = None,
                      majority_share: float = 0.7, side_weight: float = 0.0, noise: float = 3.0,
                      seed: int = 0, prefix: str = "user") -> list[Persona]:
    """Two opposing groups on ``dimension``: round(majority_share * n) prefer ``majority_pole``, the rest the other.

    ``dimension`` may name several joined by "+" ("format+length"): the groups are then opposed on each at once,
    weighed equally (the majority at each one's second pole unless ``majority_pole`` names one of the first).
    Other dimensions get random per-person weights of size ``side_weight`` (0 = people only care about the
    contested ones).
    """
    contested = dimension.split("+")
    majority = {}
    for name in contested:
        poles = DIMENSIONS[name].poles
        majority[name] = majority_pole if majority_pole in poles else poles[1]
    rng = random.Random(seed)
    n_major = int(round(majority_share * n_users))
    sides = [True] * n_major + [False] * (n_users - n_major)
    rng.shuffle(sides)
    people = []
    for i, in_majority in enumerate(sides):
        prefs, group = {}, []
        for name in contested:
            poles = DIMENSIONS[name].poles
            pole = majority[name] if in_majority else poles[1 - poles.index(majority[name])]
            prefs[name] = 1.0 if poles.index(pole) == 1 else -1.0
            group.append(f"{name}:{pole}")
        for other in DIMENSIONS:
            if other not in contested and side_weight:
                prefs[other] = rng.uniform(-side_weight, side_weight)
        people.append(Persona(f"{prefix}{i + 1}", "+".join(group), prefs, noise))
    return people
