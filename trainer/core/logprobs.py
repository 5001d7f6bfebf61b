"""Log-probabilities of given tokens without materialising (tokens x vocabulary) tensors.

For preference training only the reply tokens' log-probs matter. The plain route
(logits -> log_softmax -> gather) keeps several full (N, R, V) tensors alive for
the backward pass; with a 49k vocabulary that is most of the memory and time of
a small model. ``token_logps`` instead keeps the hidden states, works through
the vocabulary projection in row chunks, and recomputes each chunk's softmax in
the backward pass.
"""

from __future__ import annotations

import torch
from torch import nn

CHUNK = 2048  # rows of hidden states per projection chunk: bounds memory at CHUNK x V floats


class _TokenLogps(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # hidden (M, H), weight (V, H), labels (M,) -> (M,) float32 log p(label | hidden)
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(out)
        for s in range(0, hidden.shape[0], CHUNK):
            logits = (hidden[s:s + CHUNK] @ weight.T).float()  # (c, V)
            lse[s:s + CHUNK] = logits.logsumexp(-1)
            out[s:s + CHUNK] = logits.gather(1, labels[s:s + CHUNK, None]).squeeze(1) - lse[s:s + CHUNK]
        ctx.save_for_backward(hidden, weight, labels, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hidden, weight, labels, lse = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        for s in range(0, hidden.shape[0], CHUNK):
            h = hidden[s:s + CHUNK]  # (c, H)
            g = grad_out[s:s + CHUNK, None].float()  # (c, 1)
            # d logp / d logits = onehot(label) - softmax(logits)
            grad_logits = (h @ weight.T).float().sub_(lse[s:s + CHUNK, None]).exp_().mul_(-g)  # (c, V)
            grad_logits.scatter_add_(1, labels[s:s + CHUNK, None], g)
            grad_logits = grad_logits.to(weight.dtype)
            if grad_hidden is not None:
                grad_hidden[s:s + CHUNK] = grad_logits @ weight  # (c, H)
            if grad_weight is not None:
                grad_weight += (grad_logits.T @ h).float()  # (V, H)
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None


def token_logps(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log softmax(hidden @ weight.T)[label] for each row: hidden (M, H), weight (V, H), labels (M,) -> (M,)."""
    return _TokenLogps.apply(hidden, weight, labels)


def plain_head(lm: nn.Module) -> nn.Linear | None:
    """The output projection when logits are exactly ``hidden @ W.T`` (no bias, scaling or soft-capping)."""
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    head = base.get_output_embeddings()
    config = base.config
    special = any(getattr(config, k, None) not in (None, 1, 1.0) for k in
                  ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale"))
    if type(head) is not nn.Linear or head.bias is not None or special or not hasattr(base, "get_decoder"):
        return None
    return head
