"""Synthetic populations: two opposing groups on a style dimension (e.g. 70 % prefer detail, 30 % brevity,
as in the paper's TL;DR setup), drawn from a seed."""

from __future__ import annotations

import random

from users.synthetic.rule import DIMENSIONS, Persona


def sample_population(n_users: int, *, dimension: str = "length", majority_pole: str | None = None,
                      majority_share: float = 0.7, side_weight: float = 0.0, noise: float = 3.0,
                      seed: int = 0, prefix: str = "user") -> list[Persona]:
    """Two opposing groups on ``dimension``: round(majority_share * n) prefer ``majority_pole``, the rest the other.

    Other dimensions get random per-person weights of size ``side_weight``
    (0 = people only care about the contested dimension).
    """
    dim = DIMENSIONS[dimension]
    majority_pole = majority_pole or dim.poles[1]
    minority_pole = dim.poles[1 - dim.poles.index(majority_pole)]
    rng = random.Random(seed)
    n_major = int(round(majority_share * n_users))
    poles = [majority_pole] * n_major + [minority_pole] * (n_users - n_major)
    rng.shuffle(poles)
    people = []
    for i, pole in enumerate(poles):
        prefs = {dimension: 1.0 if dim.poles.index(pole) == 1 else -1.0}
        for other in DIMENSIONS:
            if other != dimension and side_weight:
                prefs[other] = rng.uniform(-side_weight, side_weight)
        people.append(Persona(f"{prefix}{i + 1}", f"{dimension}:{pole}", prefs, noise))
    return people
