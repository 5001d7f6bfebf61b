"""Pairwise preference losses as pure functions of tensors, and their personalized form.

Every loss takes the same arguments so they can live in one table:

    chosen_logps, rejected_logps:          (B,) summed log pi(y|e, x) of the policy
    ref_chosen_logps, ref_rejected_logps:  (B,) summed log pi_ref(y|x); ignored by reference-free losses
    chosen_lengths, rejected_lengths:      (B,) reply token counts (for length-normalised losses)
    beta:  inverse temperature;  gamma: target margin (SimPO only)

and return ``(losses (B,), chosen_rewards (B,), rejected_rewards (B,))`` with the
rewards detached: they are reported, never differentiated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _log_ratio_margins(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps):
    """(B,) log-ratio of the chosen reply minus that of the rejected one."""
    return (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)


def _rewards(beta, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps):
    """The implicit rewards beta * log(pi / pi_ref) of both replies, detached."""
    return (beta * (chosen_logps - ref_chosen_logps)).detach(), (beta * (rejected_logps - ref_rejected_logps)).detach()


def dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, chosen_lengths, rejected_lengths,
             *, beta: float, gamma: float = 0.0):
    """DPO (sigmoid): -log sigma(beta * [(c - c_ref) - (r - r_ref)]). All inputs (B,)."""
    margins = _log_ratio_margins(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return -F.logsigmoid(beta * margins), *_rewards(beta, chosen_logps, rejected_logps, ref_chosen_logps,
                                                     ref_rejected_logps)


def ipo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, chosen_lengths, rejected_lengths,
             *, beta: float, gamma: float = 0.0):
    """IPO: ([(c - c_ref) - (r - r_ref)] - 1 / (2 beta))^2, regressing the margin to a fixed target. Inputs (B,)."""
    margins = _log_ratio_margins(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return (margins - 1.0 / (2.0 * beta)) ** 2, *_rewards(beta, chosen_logps, rejected_logps, ref_chosen_logps,
                                                           ref_rejected_logps)


def simpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, chosen_lengths, rejected_lengths,
               *, beta: float, gamma: float = 0.5):
    """SimPO: -log sigma(beta * (c / |c| - r / |r|) - gamma); reference-free, length-normalised. Inputs (B,).

    The reward is the length-averaged log-prob, so the reference log-probs are not used.
    """
    # (B,) mean log-prob per reply token
    avg_c, avg_r = chosen_logps / chosen_lengths, rejected_logps / rejected_lengths
    loss = -F.logsigmoid(beta * (avg_c - avg_r) - gamma)
    return loss, (beta * avg_c).detach(), (beta * avg_r).detach()


def hinge_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, chosen_lengths, rejected_lengths,
               *, beta: float, gamma: float = 0.0):
    """Hinge (SLiC-style): max(0, 1 - beta * [(c - c_ref) - (r - r_ref)]). Inputs (B,)."""
    margins = _log_ratio_margins(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return torch.relu(1.0 - beta * margins), *_rewards(beta, chosen_logps, rejected_logps, ref_chosen_logps,
                                                        ref_rejected_logps)


LOSSES = {"dpo": dpo_loss, "ipo": ipo_loss, "simpo": simpo_loss, "hinge": hinge_loss}


def get_loss(name: str):
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None


@dataclass
class PairLogps:
    """Policy log-probs of one term (one soft prompt) for B pairs."""

    chosen: torch.Tensor  # (B,)
    rejected: torch.Tensor  # (B,)


@dataclass
class PairRefs:
    """What does not depend on the policy: reference log-probs and reply lengths for B pairs."""

    chosen: torch.Tensor  # (B,)
    rejected: torch.Tensor  # (B,)
    chosen_lengths: torch.Tensor  # (B,)
    rejected_lengths: torch.Tensor  # (B,)


def pair_loss(name: str, policy: PairLogps, ref: PairRefs, *, beta: float, gamma: float = 0.5):
    """One term of the loss: (losses (B,), chosen_rewards (B,), rejected_rewards (B,))."""
    return get_loss(name)(policy.chosen, policy.rejected, ref.chosen, ref.rejected,
                          ref.chosen_lengths, ref.rejected_lengths, beta=beta, gamma=gamma)


def personalized_loss(name: str, personal: PairLogps | None, generic: PairLogps | None, ref: PairRefs, *,
                      alpha: float, beta: float, gamma: float = 0.5,
                      pair_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """alpha * l(e_u) + (1 - alpha) * l(e_0), averaged over the batch (each pair times its weight in
    ``pair_weights`` (B,), when given: margin-weighted pairing).

    personal: log-probs with each pair's user vectors, generic: with the generic
    user's (or, for plain DPO, with no soft prompt at all); a term whose weight
    is zero may be None. Returns (scalar loss, metrics of detached tensors with
    TRL's names, taken from the personal term when there is one).
    """
    if personal is None and alpha > 0 or generic is None and alpha < 1:
        raise ValueError("a term with non-zero weight is missing")
    total = 0.0
    metrics: dict[str, torch.Tensor] = {}
    rewards = {}
    for label, logps, weight in [("personal", personal, alpha), ("generic", generic, 1.0 - alpha)]:
        if weight == 0:
            continue
        losses, rew_c, rew_r = pair_loss(name, logps, ref, beta=beta, gamma=gamma)
        term = (losses * pair_weights).mean() if pair_weights is not None else losses.mean()
        total = total + weight * term
        metrics[f"loss/{label}"] = term.detach()
        rewards[label] = (rew_c, rew_r)
    shown = personal if alpha > 0 else generic
    rew_c, rew_r = rewards["personal" if alpha > 0 else "generic"]
    metrics.update({
        "loss": total.detach(),
        "rewards/chosen": rew_c.mean(),
        "rewards/rejected": rew_r.mean(),
        "rewards/margins": (rew_c - rew_r).mean(),
        "rewards/accuracies": (rew_c > rew_r).float().mean(),
        "logps/chosen": shown.chosen.detach().mean(),
        "logps/rejected": shown.rejected.detach().mean(),
    })
    return total, metrics
