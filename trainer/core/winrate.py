"""Win-rates of one model's replies against another's, ties counting half, with a 95 % bootstrap interval.

Pure (numpy only, no torch, no Django): the report the dashboard shows and the benchmark prints both come
from here. An outcome is 1 (ours preferred), 0.5 (a tie) or 0 (theirs preferred). The percentile bootstrap
of a mean of such outcomes depends only on the counts of wins, ties and losses, so its distribution is
worked out exactly (the sum of n draws from {0, 1/2, 1}, by repeated convolution) rather than sampled: the
interval is the same on every run and needs no seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

WIN, TIE, LOSS = 1.0, 0.5, 0.0


def outcome(ours: float, theirs: float) -> float:
    """1 when our score is higher, 0.5 when equal, 0 when lower."""
    return WIN if ours > theirs else TIE if ours == theirs else LOSS


@dataclass(frozen=True)
class WinRate:
    rate: float | None  # mean outcome: (wins + ties / 2) / n; None when nothing was judged
    low: float | None  # 95 % bootstrap interval of the rate
    high: float | None
    n: int
    wins: int
    ties: int
    losses: int

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        """"78 % [70, 85], n=40" (or "no judgements")."""
        if self.rate is None:
            return "no judgements"
        return f"{self.rate:.0%} [{self.low * 100:.0f}, {self.high * 100:.0f}], n={self.n}"


def win_rate(outcomes: list[float], level: float = 0.95) -> WinRate:
    """The win-rate of ``outcomes`` (each 1, 0.5 or 0) and its percentile bootstrap interval at ``level``."""
    wins = sum(1 for o in outcomes if o == WIN)
    ties = sum(1 for o in outcomes if o == TIE)
    losses = sum(1 for o in outcomes if o == LOSS)
    n = len(outcomes)
    if wins + ties + losses != n:
        raise ValueError("an outcome must be 1 (win), 0.5 (tie) or 0 (loss)")
    if not n:
        return WinRate(None, None, None, 0, 0, 0, 0)
    low, high = bootstrap_interval(wins, ties, losses, level)
    return WinRate((wins + ties / 2) / n, low, high, n, wins, ties, losses)


def bootstrap_interval(wins: int, ties: int, losses: int, level: float = 0.95) -> tuple[float, float]:
    """The exact percentile bootstrap interval of the mean outcome.

    A bootstrap resample draws n outcomes with replacement; its sum in half-points (win 2, tie 1, loss 0)
    is the sum of n independent draws with probabilities (losses, ties, wins) / n, whose distribution is the
    n-fold convolution of that three-point law. The interval runs from the resample mean at the
    (1 - level) / 2 quantile to the one at (1 + level) / 2, each the smallest value whose cumulative
    probability reaches the quantile (the inverse of the empirical distribution function).
    """
    n = wins + ties + losses
    step = np.array([losses, ties, wins], dtype=np.float64) / n  # P(0), P(1/2), P(1) in half-points 0, 1, 2
    law = _power(step, n)  # (2n + 1,): P(sum of half-points = k)
    cumulative = np.cumsum(law)
    tail = (1 - level) / 2
    # A tolerance so that probabilities worked out to exactly the quantile (e.g. 1/40) are not lost to rounding.
    low = int(np.searchsorted(cumulative, tail - 1e-12))
    high = int(np.searchsorted(cumulative, 1 - tail - 1e-12))
    return low / (2 * n), min(high, 2 * n) / (2 * n)


def _power(law: np.ndarray, n: int) -> np.ndarray:
    """The distribution of the sum of ``n`` independent draws from ``law`` (by squaring: log2(n) convolutions)."""
    result = np.array([1.0])
    while n:
        if n & 1:
            result = np.convolve(result, law)
        n >>= 1
        if n:
            law = np.convolve(law, law)
    return result


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion ``p`` of ``n`` (a held-out pair accuracy); NaNs when n is 0."""
    if not n:
        return (float("nan"), float("nan"))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half
