"""A newcomer placed among the people a version has seen, one rating at a time, without running the model.

The seen people's vectors (their offsets from the generic vectors) span a small space: their mean and the first
``k`` principal directions (``basis_from_offsets``). A newcomer's offset is taken in it, ``mean + w @ directions``
with ``w`` in R^k. For each candidate pair of an onboarding pool the model is run once, ahead of time: the pair's
implicit-reward margin at ``w = 0`` and its derivative along each direction (``PoolPair.margin`` and ``slope``).
To first order the margin at any ``w`` is ``margin + slope @ w``, and a rating ("a is better than b") is a
logistic observation of its sign.

``estimate`` is Bayesian logistic regression on those observations, with a Gaussian prior as wide as the seen
people are spread along each direction, fitted by Newton's method (the Laplace approximation gives its
covariance). ``k`` is at most a handful, so an update costs microseconds and never touches the model.
``next_question`` asks, among the pairs not yet answered, either the one whose answer is least predictable
(the expected information about ``w``: the margin's variance under the estimate, weighted by how close the
predicted answer is to a coin toss) or one at random, so that both can be measured.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

ADAPTIVE, RANDOM = "adaptive", "random"


@dataclass(frozen=True)
class Basis:
    """Where a version's seen people are: the mean offset (D,), ``k`` unit directions (k, D) and the spread of the
    seen people's coordinates along each (k,). D is T x H, the vectors flattened."""
    mean: torch.Tensor
    directions: torch.Tensor
    spread: torch.Tensor

    @property
    def k(self) -> int:
        return self.directions.shape[0]

    def offset(self, w: torch.Tensor) -> torch.Tensor:
        """The flattened offset (D,) of coordinates ``w``."""
        return self.mean + w.to(self.directions.dtype) @ self.directions


def basis_from_offsets(offsets: torch.Tensor, k: int = 6, floor: float = 1e-6) -> Basis:
    """The mean and first ``k`` principal directions of the seen people's offsets (N, T, H), with the spread of
    their coordinates along each; fewer directions when there are fewer people or the rest carry nothing."""
    flat = offsets.detach().reshape(offsets.shape[0], -1).double()
    mean = flat.mean(dim=0)
    centred = flat - mean
    if flat.shape[0] < 2:
        return Basis(mean, torch.zeros(0, flat.shape[1], dtype=flat.dtype), torch.zeros(0, dtype=flat.dtype))
    _, values, vt = torch.linalg.svd(centred, full_matrices=False)
    spread = values / math.sqrt(flat.shape[0] - 1)  # standard deviation of the coordinates along each direction
    keep = [i for i in range(min(k, len(values))) if spread[i] > floor * max(float(spread[0]), floor)]
    return Basis(mean, vt[keep], spread[keep])


@dataclass(frozen=True)
class PoolPair:
    """A question of the pool: two replies to one prompt, with what the model said of them ahead of time."""
    key: str
    margin: float  # implicit-reward margin of a over b at the basis' origin (w = 0)
    slope: tuple[float, ...]  # its derivative along each direction of the basis


@dataclass(frozen=True)
class Answer:
    key: str
    a_better: bool


@dataclass(frozen=True)
class Estimate:
    """The newcomer's coordinates: mean (k,) and covariance (k, k)."""
    mean: torch.Tensor
    covariance: torch.Tensor

    def margin(self, pair: PoolPair) -> tuple[float, float]:
        """The pair's predicted margin and its variance."""
        g = torch.tensor(pair.slope, dtype=self.mean.dtype)
        return pair.margin + float(g @ self.mean), float(g @ self.covariance @ g)

    def prefers_a(self, pair: PoolPair) -> float:
        """The probability that the newcomer prefers reply a (the margin's uncertainty included, probit-style)."""
        mu, var = self.margin(pair)
        return 1.0 / (1.0 + math.exp(-mu / math.sqrt(1.0 + math.pi * var / 8.0)))


def prior(basis: Basis) -> Estimate:
    return Estimate(torch.zeros(basis.k, dtype=torch.float64), torch.diag(basis.spread.double() ** 2))


def estimate(basis: Basis, pool: dict[str, PoolPair], answers: list[Answer], steps: int = 25) -> Estimate:
    """The posterior of the newcomer's coordinates after ``answers`` (Newton's method on the log posterior; the
    covariance is the inverse of its curvature at the optimum)."""
    start = prior(basis)
    if basis.k == 0 or not answers:
        return start
    precision = torch.diag(1.0 / basis.spread.double() ** 2)
    g = torch.tensor([pool[a.key].slope for a in answers], dtype=torch.float64)  # (n, k)
    m0 = torch.tensor([pool[a.key].margin for a in answers], dtype=torch.float64)
    y = torch.tensor([1.0 if a.a_better else -1.0 for a in answers], dtype=torch.float64)
    w = torch.zeros(basis.k, dtype=torch.float64)
    for _ in range(steps):
        z = y * (m0 + g @ w)
        p = torch.sigmoid(-z)  # how wrong each answer looks from here
        gradient = (g * (y * p)[:, None]).sum(0) - precision @ w
        curvature = precision + g.T @ (g * (p * (1 - p))[:, None])
        step = torch.linalg.solve(curvature, gradient)
        w = w + step
        if float(step.abs().max()) < 1e-9:
            break
    z = y * (m0 + g @ w)
    p = torch.sigmoid(-z)
    curvature = precision + g.T @ (g * (p * (1 - p))[:, None])
    return Estimate(w, torch.linalg.inv(curvature))


def information(current: Estimate, pair: PoolPair) -> float:
    """How much an answer to ``pair`` is expected to tell about the coordinates (nats, to first order)."""
    _, var = current.margin(pair)
    p = current.prefers_a(pair)
    return 0.5 * math.log1p(p * (1 - p) * var)


def next_question(pool: dict[str, PoolPair], answers: list[Answer], current: Estimate, *, strategy: str = ADAPTIVE,
                  rng: random.Random | None = None) -> PoolPair | None:
    """The next pair to ask (never one already answered); None when every pair was."""
    asked = {a.key for a in answers}
    left = [pair for key, pair in sorted(pool.items()) if key not in asked]
    if not left:
        return None
    if strategy == RANDOM:
        return (rng or random.Random()).choice(left)
    if strategy != ADAPTIVE:
        raise ValueError(f"unknown strategy {strategy!r}: {ADAPTIVE} or {RANDOM}")
    return max(left, key=lambda pair: information(current, pair))


# --- what the model says of each pair, once, ahead of any newcomer ---------------------------------------------

def seen_offsets(user_model) -> torch.Tensor:
    """(N, T, H) the seen people's vectors less the generic ones, whatever the kind of user model."""
    from trainer.core.usermodel import GENERIC

    with torch.no_grad():
        generic = user_model.vectors_from(user_model.parameter_of(GENERIC))
        return torch.stack([user_model.vectors_from(user_model.parameter_of(row)) - generic
                            for row in range(1, user_model.n_users + 1)])


def prepare_pool(core, tokenizer, config, basis: Basis, pairs: list, keys: list[str], *, device="cpu",
                 chunk: int = 8, progress=None) -> dict[str, PoolPair]:
    """Each pair's implicit-reward margin at the basis' origin and its slope along each direction: a forward
    and a backward pass per ``chunk`` pairs with the soft prompt itself as the variable, so that a newcomer's
    every later rating costs no model pass. ``pairs[i].chosen`` is reply a, ``rejected`` reply b."""
    from trainer.core.fastfit import frozen
    from trainer.core.loop import autocast_for
    from trainer.core.policy import encode_pairs
    from trainer.core.reference import ReferenceCache
    from trainer.core.usermodel import GENERIC

    autocast = autocast_for(torch.device(device), config)
    user_model = core.user_model
    with torch.no_grad():
        generic = user_model.vectors_from(user_model.parameter_of(GENERIC)).double()  # (T, H)
        origin = generic + basis.mean.reshape(generic.shape)  # the newcomer at w = 0
    directions = basis.directions.to(device)
    pool: dict[str, PoolPair] = {}
    with frozen(core):
        for start in range(0, len(pairs), chunk):
            part = encode_pairs(tokenizer, pairs[start:start + chunk], None, config)
            refs = ReferenceCache()
            refs.fill(core, part, device=device, autocast=autocast)
            ref = refs.get(part, device)
            batch = core.sequences(part, with_slots=True).to(device)
            n = len(part)
            soft = origin.float().to(device).unsqueeze(0).repeat(2 * n, 1, 1).requires_grad_(True)
            with torch.enable_grad(), autocast():
                logps = core(batch, soft_prompt=soft).float()
                logps.sum().backward()
            grads = soft.grad.double().reshape(2 * n, -1)  # each sequence's own gradient
            margins = config.beta * ((logps.detach()[:n] - ref.chosen) - (logps.detach()[n:] - ref.rejected)).double()
            slopes = config.beta * (grads[:n] - grads[n:]) @ directions.T  # (n, k)
            for i in range(n):
                key = keys[start + i]
                pool[key] = PoolPair(key, float(margins[i]), tuple(float(x) for x in slopes[i]))
            if progress is not None:
                progress(min(start + chunk, len(pairs)), len(pairs))
    return pool
