"""New-user fast fit: learn one user's vectors from their pairs, everything else frozen.

The LoRA adapter, the generic user and every other user stay untouched; only
the new user's parameter is optimised (an offset from the generic user for the
individual model, a mixture-weight row for the cluster model), then appended to
the user table. No retraining, and the other users' vectors are bit-identical.

The default method needs about two training steps of compute. The user's
parameter enters the model only through the soft prompt, so one backward pass
gives the gradient of every reply's log-prob with respect to it (a Jacobian of
2P rows). Around that point the log-probs are linear in the parameter, and the
preference loss of the linear model is minimised within a trust radius with
no further model passes. Each radius's solution is then scored by one forward
pass of the real model; the best one that lowers the real loss is kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass

import torch

from trainer.core.config import FastFitConfig
from trainer.core.data import DataError, Pair
from trainer.core.loop import autocast_for
from trainer.core.losses import PairLogps, PairRefs, pair_loss
from trainer.core.policy import PreferenceModel, encode_pairs
from trainer.core.reference import ReferenceCache
from trainer.core.sequences import SequenceBatch
from trainer.core.usermodel import UserIndex

SOLVER_ITERATIONS = 150  # Adam iterations on the linear model per radius: matrix-vector products, milliseconds


@dataclass
class FitReport:
    user_id: str
    row: int  # the new row in the user model
    pairs: int
    seconds: float
    losses: list[float]  # full-batch loss at the start, then after each step (adam) or round (linear)
    passes: int = 0  # forward passes of the model over the user's pairs (a backward pass counts as two)


def fast_fit(core: PreferenceModel, tokenizer, user_index: UserIndex, config, user_id: str, pairs: list[Pair], *,
             fit: FastFitConfig | None = None, device="cpu", start_row: int | None = None) -> FitReport:
    """Fit ``user_id``'s vectors on ``pairs`` and add them to ``core.user_model`` and ``user_index``.

    The fit starts at the generic user, or at the existing row ``start_row`` (the same
    person's vectors from training), which is left as it is.
    """
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
    autocast = autocast_for(torch.device(device), config if fit.bf16 is None else
                            dataclasses.replace(config, bf16=fit.bf16))
    encoded = encode_pairs(tokenizer, pairs, None, config)
    refs = ReferenceCache()
    refs.fill(core, encoded, device=device, autocast=autocast)
    problem = _Problem(core, core.sequences(encoded, with_slots=True).to(device), refs.get(encoded, device), config,
                       autocast)
    param = (core.user_model.new_user_parameter() if start_row is None else
             core.user_model.parameter_of(start_row)).detach().to(device)
    with frozen(core):
        fitter = _fit_linear if fit.method == "linear" else _fit_adam
        param, losses = fitter(problem, param, fit)
    row = core.user_model.add_user(param)
    user_index.add(user_id)
    return FitReport(user_id, row, len(encoded), time.perf_counter() - start, losses, problem.passes)


@contextlib.contextmanager
def frozen(core: PreferenceModel):
    """The model in eval mode with none of its parameters trainable, for work whose only variable is a person's
    vectors; as it was afterwards."""
    trainable = [p for p in core.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    was_training = core.training
    core.eval()
    try:
        yield core
    finally:
        for p in trainable:
            p.requires_grad_(True)
        core.train(was_training)


class _Problem:
    """One user's pairs as a single batch [chosen_1..P, rejected_1..P], with their cached reference log-probs."""

    def __init__(self, core: PreferenceModel, batch: SequenceBatch, ref: PairRefs, config, autocast):
        self.core, self.batch, self.ref, self.config, self.autocast = core, batch, ref, config, autocast
        self.n = batch.input_ids.shape[0]  # 2P sequences
        self.passes = 0

    def loss_of_logps(self, logps: torch.Tensor) -> torch.Tensor:
        P = self.n // 2
        return pair_loss(self.config.loss, PairLogps(logps[:P], logps[P:]), self.ref, beta=self.config.beta,
                         gamma=self.config.simpo_gamma)[0].mean()

    def logps(self, param: torch.Tensor) -> torch.Tensor:
        """(2P,) reply log-probs with the soft prompt made from ``param``; differentiable in ``param``."""
        soft = self.core.user_model.vectors_from(param).unsqueeze(0).expand(self.n, -1, -1)  # (2P, T, H)
        with self.autocast():
            out = self.core(self.batch, soft_prompt=soft).float()
        self.passes += 1 if not torch.is_grad_enabled() else 3
        return out

    @torch.no_grad()
    def loss(self, param: torch.Tensor) -> float:
        return float(self.loss_of_logps(self.logps(param)))

    def jacobian(self, param: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probs (2P,), d log-prob / d param (2P, D)) at ``param``, from one forward and one backward pass.

        Every sequence gets its own copy of the soft prompt, so the gradient of the
        summed log-probs with respect to copy s is sequence s's own gradient.
        """
        user_model = self.core.user_model
        vectors = user_model.vectors_from(param).detach()  # (T, H)
        soft = vectors.unsqueeze(0).repeat(self.n, 1, 1).requires_grad_(True)  # (2P, T, H)
        with torch.enable_grad(), self.autocast():
            logps = self.core(self.batch, soft_prompt=soft).float()  # (2P,)
            logps.sum().backward()
        self.passes += 3
        _, pullback = torch.func.vjp(user_model.vectors_from, param.detach())  # vectors -> param, per sequence
        per_param = torch.func.vmap(pullback)(soft.grad.float())[0]  # (2P, *param.shape)
        return logps.detach(), per_param.reshape(self.n, -1)


def _radius_unit(problem: _Problem, param: torch.Tensor) -> float:
    """What a radius of 1 means: the generic vectors' norm when the parameter lives in vector space (an
    offset), else the parameter's own scale (mixture logits: sqrt of their number)."""
    vectors = problem.core.user_model.vectors_from(param)
    if vectors.shape == param.shape:
        return float(vectors.norm())
    return float(param.numel()) ** 0.5


def _solve_linear(problem: _Problem, logps0: torch.Tensor, J: torch.Tensor, radius: float,
                  start: torch.Tensor) -> torch.Tensor:
    """argmin over |delta| <= radius of the loss of logps0 + J @ delta (projected Adam, no model passes)."""
    delta = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([delta], lr=radius / 20)
    for _ in range(SOLVER_ITERATIONS):
        loss = problem.loss_of_logps(logps0 + J @ delta)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            norm = delta.norm()
            if norm > radius:
                delta.mul_(radius / norm)
    return delta.detach()


def _fit_linear(problem: _Problem, param: torch.Tensor, fit: FastFitConfig) -> tuple[torch.Tensor, list[float]]:
    losses: list[float] = []
    unit = _radius_unit(problem, param)
    for _ in range(fit.rounds):
        logps0, J = problem.jacobian(param)
        if not losses:  # the Jacobian's forward pass is the starting point's loss: no extra pass
            losses.append(float(problem.loss_of_logps(logps0)))
        best_loss, best = losses[-1], param
        delta = torch.zeros(J.shape[1], device=J.device)
        for radius in sorted(fit.radii):
            delta = _solve_linear(problem, logps0, J, radius * unit, delta)  # warm start from the smaller radius
            candidate = param + delta.view_as(param)
            loss = problem.loss(candidate)
            if loss >= best_loss:
                break  # further out the linear model is no longer trustworthy
            best_loss, best = loss, candidate
        losses.append(best_loss)
        if best is param:
            break  # no radius helped: we are at the linear model's limit
        param = best
    return param, losses


def _fit_adam(problem: _Problem, param: torch.Tensor, fit: FastFitConfig) -> tuple[torch.Tensor, list[float]]:
    param = param.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([param], lr=fit.lr, weight_decay=fit.weight_decay)
    losses = []
    for _ in range(fit.steps):
        loss = problem.loss_of_logps(problem.logps(param))
        losses.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    losses.append(problem.loss(param))
    return param.detach(), losses
