"""Gradient entanglement (Yuan et al., arXiv 2410.13828) over the trainable parameters.

A DPO step moves the parameters along a positive multiple of g_w - g_l, where
g_w and g_l are the gradients of the chosen and rejected log-probs. To first
order the chosen log-prob then changes by ||g_w||^2 - <g_w, g_l> and the
rejected one by <g_w, g_l> - ||g_l||^2, so the chosen reply loses probability
when <g_w, g_l> > ||g_w||^2 and the rejected one gains when <g_w, g_l> > ||g_l||^2.
"""

from __future__ import annotations

import torch

from trainer.core.policy import EncodedPair


def entanglement(g_w: torch.Tensor, g_l: torch.Tensor, eps: float = 1e-12) -> dict[str, torch.Tensor]:
    """Per-pair quantities from gradient vectors g_w, g_l: (P, D). Every value is (P,)."""
    inner = (g_w * g_l).sum(-1)  # (P,)
    sq_w = (g_w * g_w).sum(-1)  # (P,)
    sq_l = (g_l * g_l).sum(-1)  # (P,)
    norm_w, norm_l = sq_w.sqrt(), sq_l.sqrt()
    return {
        "inner": inner,
        "cosine": inner / (norm_w * norm_l).clamp_min(eps),
        "norm_chosen": norm_w,
        "norm_rejected": norm_l,
        "chosen_down": (inner > sq_w).float(),  # the step would lower log pi(y_w)
        "rejected_up": (inner > sq_l).float(),  # the step would raise log pi(y_l)
    }


def summarize(per_pair: dict[str, torch.Tensor]) -> dict[str, float]:
    """Means over pairs with dashboard names; the two flags become shares of pairs."""
    names = {"inner": "entanglement/inner", "cosine": "entanglement/cosine",
             "norm_chosen": "entanglement/grad_norm_chosen", "norm_rejected": "entanglement/grad_norm_rejected",
             "chosen_down": "entanglement/share_chosen_down", "rejected_up": "entanglement/share_rejected_up"}
    means = torch.stack([per_pair[k].float().mean() for k in names])
    return dict(zip(names.values(), means.tolist()))


def pair_gradients(core, pairs: list[EncodedPair], *, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened gradients of log pi(y_w) and log pi(y_l) for each pair, each (P, D).

    Uses each pair's own user vectors (or none for plain DPO), in eval mode so
    dropout neither adds noise nor consumes the training RNG.
    """
    params = [p for p in core.parameters() if p.requires_grad]
    was_training = core.training
    core.eval()
    g_w, g_l = [], []
    try:
        for pair in pairs:
            batch = core.sequences([pair], with_slots=core.user_model is not None).to(device)
            rows = torch.tensor([pair.user_row, pair.user_row], device=device)
            logps = core(batch, rows)  # (2,): chosen, rejected
            for logp, out in ((logps[0], g_w), (logps[1], g_l)):
                grads = torch.autograd.grad(logp, params, retain_graph=True, allow_unused=True)
                out.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                      for g, p in zip(grads, params)]))  # (D,)
    finally:
        core.train(was_training)
    return torch.stack(g_w).float(), torch.stack(g_l).float()  # (P, D) each


def entanglement_report(core, pairs: list[EncodedPair], *, device) -> dict[str, float]:
    """The dashboard's numbers for a few pairs."""
    if not pairs:
        return {}
    return summarize(entanglement(*pair_gradients(core, pairs, device=device)))
