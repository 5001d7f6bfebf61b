"""New-user fast fit: learn one user's vectors from their pairs, everything else frozen.

The LoRA adapter, the generic user and every other user stay untouched; only
the new user's parameter is optimised (an offset from the generic user for the
individual model, a mixture-weight row for the cluster model), then appended to
the user table. No retraining, and the other users' vectors are bit-identical.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from trainer.core.config import FastFitConfig
from trainer.core.data import DataError, Pair
from trainer.core.losses import PairLogps, pair_loss
from trainer.core.policy import PreferenceModel, encode_pairs
from trainer.core.reference import ReferenceCache
from trainer.core.usermodel import UserIndex


@dataclass
class FitReport:
    user_id: str
    row: int  # the new row in the user model
    pairs: int
    seconds: float
    losses: list[float]  # full-batch loss before each step, and after the last


def fast_fit(core: PreferenceModel, tokenizer, user_index: UserIndex, config, user_id: str, pairs: list[Pair], *,
             fit: FastFitConfig | None = None, device="cpu") -> FitReport:
    """Fit ``user_id``'s vectors on ``pairs`` and add them to ``core.user_model`` and ``user_index``."""
    fit = fit or FastFitConfig()
    if core.user_model is None:
        raise ValueError("This model has no user model (plain DPO): there are no user vectors to fit.")
    if user_id in user_index:
        raise ValueError(f"user {user_id!r} already has vectors in this model")
    pairs = [p for p in pairs if p.user_id == user_id]
    if not pairs:
        raise DataError(f"user {user_id!r} has no pairs to fit")
    start = time.perf_counter()
    torch.manual_seed(fit.seed)
    encoded = encode_pairs(tokenizer, pairs, None, config)
    refs = ReferenceCache()
    refs.fill(core, encoded, device=device)
    ref = refs.get(encoded, device)
    batch = core.sequences(encoded, with_slots=True).to(device)  # (2P, L): all of the user's pairs at once
    frozen = [p for p in core.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    param = core.user_model.new_user_parameter().to(device)
    optimizer = torch.optim.Adam([param], lr=fit.lr, weight_decay=fit.weight_decay)
    was_training = core.training
    core.eval()
    losses = []
    P = len(encoded)
    try:
        for _ in range(fit.steps + 1):
            soft = core.user_model.vectors_from(param).unsqueeze(0).expand(2 * P, -1, -1)  # (2P, T, H)
            with torch.set_grad_enabled(len(losses) < fit.steps):
                logps = core(batch, soft_prompt=soft)  # (2P,)
                loss = pair_loss(config.loss, PairLogps(logps[:P], logps[P:]), ref, beta=config.beta,
                                 gamma=config.simpo_gamma)[0].mean()
            losses.append(loss.detach())
            if len(losses) > fit.steps:
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
        core.train(was_training)
    row = core.user_model.add_user(param)
    user_index.add(user_id)
    return FitReport(user_id, row, P, time.perf_counter() - start, torch.stack(losses).tolist())
