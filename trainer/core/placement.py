"""A newcomer's coordinates among the people a version has seen, from their answers, without the model.

A space (``trainer.core.onboarding.Basis``, or a prepared pool read back) has ``k`` directions, each with the
spread of the seen people along it. Every question of a pool carries its reply a's implicit-reward margin over
reply b at the space's origin and its slope along each direction, so the margin at coordinates ``w`` is, to
first order, ``margin + slope @ w``, and an answer ("a is better") is a logistic observation of its sign.

``estimate`` is Bayesian logistic regression on those observations with a Gaussian prior as wide as the seen
people (Newton's method; the Laplace approximation gives the covariance). ``next_question`` asks, among the
pairs not yet answered, the one whose answer tells the most about ``w`` (the margin's variance under the
estimate, weighted by how close the predicted answer is to a coin toss), or one at random, so that both can be
measured. Plain numpy: ``k`` is a handful, an update takes well under a millisecond, and the web process that
runs it never loads torch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ADAPTIVE, RANDOM = "adaptive", "random"
STRATEGIES = (ADAPTIVE, RANDOM)


@dataclass(frozen=True)
class Space:
    """A prepared pool's directions as placement sees them: only the seen people's spread along each."""
    spread: tuple[float, ...]


@dataclass(frozen=True)
class PoolPair:
    """A question of the pool: two replies to one prompt, with what the model said of them ahead of time."""
    key: str
    margin: float  # implicit-reward margin of a over b at the space's origin (w = 0)
    slope: tuple[float, ...]  # its derivative along each direction


@dataclass(frozen=True)
class Answer:
    key: str
    a_better: bool


@dataclass(frozen=True)
class Estimate:
    """The newcomer's coordinates: mean (k,) and covariance (k, k)."""
    mean: np.ndarray
    covariance: np.ndarray

    def margin(self, pair: PoolPair) -> tuple[float, float]:
        """The pair's predicted margin and its variance."""
        g = np.asarray(pair.slope, dtype=np.float64)
        return pair.margin + float(g @ self.mean), float(g @ self.covariance @ g)

    def prefers_a(self, pair: PoolPair) -> float:
        """The probability that the newcomer prefers reply a (the margin's uncertainty included, probit-style)."""
        mu, var = self.margin(pair)
        return _sigmoid(mu / math.sqrt(1.0 + math.pi * var / 8.0))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def spread_of(space) -> np.ndarray:
    return np.asarray(space.spread, dtype=np.float64).reshape(-1)


def prior(space) -> Estimate:
    spread = spread_of(space)
    return Estimate(np.zeros(len(spread)), np.diag(spread ** 2))


def estimate(space, pool: dict[str, PoolPair], answers: list[Answer], steps: int = 25) -> Estimate:
    """The posterior of the newcomer's coordinates after ``answers`` (Newton's method on the log posterior; the
    covariance is the inverse of its curvature at the optimum)."""
    start = prior(space)
    spread = spread_of(space)
    if len(spread) == 0 or not answers:
        return start
    precision = np.diag(1.0 / spread ** 2)
    g = np.array([pool[a.key].slope for a in answers], dtype=np.float64).reshape(len(answers), len(spread))
    m0 = np.array([pool[a.key].margin for a in answers], dtype=np.float64)
    y = np.array([1.0 if a.a_better else -1.0 for a in answers])
    w = np.zeros(len(spread))

    def wrongness(w):  # how wrong each answer looks from w: sigmoid(-y * margin)
        return 1.0 / (1.0 + np.exp(np.clip(y * (m0 + g @ w), -500, 500)))

    for _ in range(steps):
        p = wrongness(w)
        gradient = g.T @ (y * p) - precision @ w
        curvature = precision + g.T @ (g * (p * (1 - p))[:, None])
        step = np.linalg.solve(curvature, gradient)
        w = w + step
        if float(np.abs(step).max()) < 1e-9:
            break
    p = wrongness(w)
    curvature = precision + g.T @ (g * (p * (1 - p))[:, None])
    return Estimate(w, np.linalg.inv(curvature))


def information(current: Estimate, pair: PoolPair) -> float:
    """How much an answer to ``pair`` is expected to tell about the coordinates (nats, to first order)."""
    _, var = current.margin(pair)
    p = current.prefers_a(pair)
    return 0.5 * math.log1p(p * (1 - p) * var)


def next_question(pool: dict[str, PoolPair], answers: list[Answer], current: Estimate, *, strategy: str = ADAPTIVE,
                  rng: random.Random | None = None, skipped: frozenset[str] = frozenset()) -> PoolPair | None:
    """The next pair to ask (never one already answered or skipped); None when every pair was."""
    asked = {a.key for a in answers} | set(skipped)
    left = [pair for key, pair in sorted(pool.items()) if key not in asked]
    if not left:
        return None
    if strategy == RANDOM:
        return (rng or random.Random()).choice(left)
    if strategy != ADAPTIVE:
        raise ValueError(f"unknown strategy {strategy!r}: {ADAPTIVE} or {RANDOM}")
    return max(left, key=lambda pair: information(current, pair))


COUNTS = (0, 1, 2, 3, 5, 7, 10)  # answers after which a newcomer's curve is read


def simulate(space, pool: dict[str, PoolPair], answer: Callable[[str], bool], truth: Callable[[str], bool],
             held_out: list[str], *, strategy: str, rng: random.Random, counts=COUNTS) -> dict[int, float]:
    """One simulated newcomer: asked from the pool less ``held_out``, answering by ``answer(key)`` (their rule,
    with its noise), and read after each count of answers: the share of held-out questions whose predicted
    margin has the sign of ``truth(key)`` (their rule without noise). A pool that runs out keeps its last figure."""
    asking = {key: pair for key, pair in pool.items() if key not in set(held_out)}
    answers: list[Answer] = []
    current, found = prior(space), {}
    for n in range(max(counts) + 1):
        if n in counts:
            right = [(current.margin(pool[key])[0] > 0) == truth(key) for key in held_out]
            found[n] = sum(right) / len(right)
        question = next_question(asking, answers, current, strategy=strategy, rng=rng)
        if question is None:
            break
        answers.append(Answer(question.key, answer(question.key)))
        current = estimate(space, asking, answers)
    last = found[max(found)]
    return {n: found.get(n, last) for n in counts}


def ranks_better(one, other) -> bool:
    """Whether (accuracy, mean loss) ``one`` ranks a person's pairs better than ``other``: a higher accuracy, or
    the same with a lower loss."""
    return one[0] > other[0] or (one[0] == other[0] and one[1] < other[1])
