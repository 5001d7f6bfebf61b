"""How a turn's rated candidates become preference pairs: the pairing strategies.

PRISM-style data rates every candidate of a turn 1-100 and marks the best one, which the conversation goes
on with. Three ways to turn that into pairs, each keeping only pairs whose scores differ by at least the
margin filter:

- ``best``: best versus rest. The chosen reply against each other one (what DPO on PRISM usually does).
- ``all``: every ordered pair. Also the second best against the third, and so on: more pairs from the same
  ratings, each of them a preference the person expressed.
- ``weighted``: best versus rest, each pair's loss weighted by its margin (a 90-to-10 preference counts more
  than 55-to-50). The weights are scaled so that their mean is 1 over the pairs trained on, which keeps the
  learning rate's meaning.
"""

from __future__ import annotations

from statistics import fmean
from typing import Sequence, TypeVar

T = TypeVar("T")

STRATEGIES = {
    "best": "best versus rest",
    "all": "all ordered pairs",
    "weighted": "best versus rest, weighted by margin",
}
DEFAULT = "best"


def check(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown pairing {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    return strategy


def turn_pairs(candidates: Sequence[tuple[T, float | None, bool]], strategy: str, min_margin: int = 1
               ) -> list[tuple[T, T]]:
    """(winner, loser) pairs of one turn's ``candidates`` — (reply, score or None, chosen), in display
    order — under ``strategy``. Unrated replies and ties give no pair; the order is the winners' then the
    losers' display order."""
    margin = max(1, min_margin)
    rated = [(reply, score, chosen) for reply, score, chosen in candidates if score is not None]
    winners = rated if check(strategy) == "all" else [c for c in rated if c[2]]
    return [(winner, loser) for winner, high, _ in winners
            for loser, low, chosen in rated if (strategy == "all" or not chosen) and high - low >= margin]


def margin_weights(margins: Sequence[float]) -> list[float]:
    """Each pair's weight: its margin over the mean margin (so the weights average 1)."""
    if not margins:
        return []
    mean = fmean(margins)
    return [m / mean for m in margins]
