"""Synthetic populations: two opposing groups on a style dimension (e.g. 70 % prefer detail, 30 % brevity,
as in the paper's TL;DR setup), or on two at once, each person with small tastes of their own on the other
dimensions; drawn from a seed."""

from __future__ import annotations

import random

from users.synthetic.rule import DIMENSIONS, Persona

# Named populations besides a bare dimension ("length") or several joined by "+" ("format+length"):
# name -> (the contested dimensions, the side weight it uses unless one is given).
POPULATIONS = {
    "two+sides": ("format+length", 0.5),  # opposed on format and length at once, each person with side tastes
}


def population_shape(dimension: str, side_weight: float | None = None) -> tuple[str, float]:
    """The contested dimension(s) and the side weight of the population ``dimension`` names: a name from
    POPULATIONS, one of DIMENSIONS, or several of them joined by "+" (side weight 0 unless given)."""
    contested, own = POPULATIONS.get(dimension, (dimension, 0.0))
    unknown = [name for name in contested.split("+") if name not in DIMENSIONS]
    if unknown or len(set(contested.split("+"))) != len(contested.split("+")):
        raise ValueError(f"{dimension!r}: name a population ({', '.join(POPULATIONS)}) or dimensions from "
                         f"{', '.join(sorted(DIMENSIONS))}, each once, joined by +")
    side_weight = own if side_weight is None else side_weight
    if not 0.0 <= side_weight <= 1.0:
        raise ValueError(f"side weight {side_weight}: it is relative to the contested dimensions' 1, from 0 to 1")
    return contested, side_weight


def pole_weight(dimension: str, pole: str) -> float:
    """The weight a contested dimension has for someone who wants ``pole``: +1 for its second pole, -1 for its
    first."""
    return 1.0 if DIMENSIONS[dimension].poles.index(pole) == 1 else -1.0


def side_tastes(rng: random.Random, dimensions: list[str], side_weight: float) -> dict[str, float]:
    """One person's weights on the dimensions their group does not contest: each of size between half of
    ``side_weight`` and all of it (a contested dimension weighs 1), with a random sign; none when 0.

    The size is kept away from 0 so that every person really has the tastes the population is said to have.
    """
    if not side_weight:
        return {}
    return {name: rng.choice((-1.0, 1.0)) * rng.uniform(side_weight / 2, side_weight) for name in dimensions}


def sample_population(n_users: int, *, dimension: str = "length", majority_pole: str | None = None,
                      majority_share: float = 0.7, side_weight: float | None = None, noise: float = 3.0,
                      seed: int = 0, prefix: str = "user") -> list[Persona]:
    """Two opposing groups on ``dimension``: round(majority_share * n) prefer ``majority_pole``, the rest the other.

    ``dimension`` may name several joined by "+" ("format+length"): the groups are then opposed on each at once,
    weighed equally (the majority at each one's second pole unless ``majority_pole`` names one of the first),
    or a population of POPULATIONS ("two+sides"). Every person also weighs the other dimensions by their own
    random ``side_tastes`` of size ``side_weight`` (default: the population's own; 0 = people only care about
    the contested ones, and draw nothing more from the seed). Ratings get Gaussian noise of std ``noise``.
    """
    contested, side_weight = population_shape(dimension, side_weight)
    contested = contested.split("+")
    majority = {}
    for name in contested:
        poles = DIMENSIONS[name].poles
        majority[name] = majority_pole if majority_pole in poles else poles[1]
    rng = random.Random(seed)
    n_major = int(round(majority_share * n_users))
    sides = [True] * n_major + [False] * (n_users - n_major)
    rng.shuffle(sides)
    others = [name for name in DIMENSIONS if name not in contested]
    people = []
    for i, in_majority in enumerate(sides):
        prefs, group = {}, []
        for name in contested:
            poles = DIMENSIONS[name].poles
            pole = majority[name] if in_majority else poles[1 - poles.index(majority[name])]
            prefs[name] = pole_weight(name, pole)
            group.append(f"{name}:{pole}")
        prefs.update(side_tastes(rng, others, side_weight))
        people.append(Persona(f"{prefix}{i + 1}", "+".join(group), prefs, noise))
    return people
