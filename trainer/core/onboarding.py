"""A newcomer placed among the people a version has seen, one rating at a time, without running the model.

The seen people's vectors (their offsets from the generic vectors) span a small space: their mean and the first
``k`` principal directions (``basis_from_offsets``). A newcomer's offset is taken in it, ``mean + w @ directions``
with ``w`` in R^k. For each candidate pair of an onboarding pool the model is run once, ahead of time: the pair's
implicit-reward margin at ``w = 0`` and its derivative along each direction (``PoolPair.margin`` and ``slope``).
To first order the margin at any ``w`` is ``margin + slope @ w``, and a rating ("a is better than b") is a
logistic observation of its sign.

What a newcomer's answers then do is ``trainer.core.placement``'s (no torch, no model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainer.core.placement import PoolPair


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

    def offset(self, w) -> torch.Tensor:
        """The flattened offset (D,) of coordinates ``w`` (a tensor, an array or a list)."""
        return self.mean + torch.as_tensor(w, dtype=self.directions.dtype) @ self.directions


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


class PairJudge:
    """How well given vectors rank a person's pairs through the model itself: each pair's implicit-reward margin
    (reference log-probabilities computed once), its accuracy (margin > 0) and mean DPO loss."""

    def __init__(self, core, tokenizer, config, pairs: list, *, device="cpu"):
        from trainer.core.policy import encode_pairs
        from trainer.core.reference import ReferenceCache

        self.core, self.n, self.beta = core, len(pairs), config.beta
        encoded = encode_pairs(tokenizer, pairs, None, config)
        refs = ReferenceCache()
        refs.fill(core, encoded, device=device)
        self.ref = refs.get(encoded, device)
        self.batch = core.sequences(encoded, with_slots=True).to(device)

    @torch.no_grad()
    def margins(self, vectors: torch.Tensor) -> torch.Tensor:
        soft = vectors.float().unsqueeze(0).repeat(2 * self.n, 1, 1)
        logps = self.core(self.batch, soft_prompt=soft)
        return self.beta * ((logps[: self.n] - self.ref.chosen) - (logps[self.n:] - self.ref.rejected))

    def accuracy(self, vectors: torch.Tensor) -> float:
        return float((self.margins(vectors) > 0).float().mean())

    def rank(self, vectors: torch.Tensor) -> tuple[float, float]:
        """(accuracy, mean loss): higher accuracy ranks better, and a lower loss breaks a tie."""
        margins = self.margins(vectors).double()
        return float((margins > 0).double().mean()), float(torch.nn.functional.softplus(-margins).mean())
