"""Pairs as token ids, and the trainable module: the LoRA-wrapped LM plus the user model.

``PreferenceModel`` is the one module that is wrapped for DDP: one forward pass
computes the reply log-probs of every sequence of a micro-batch (personal and
generic terms together), so the user model's parameters are used inside that
forward and their gradients are synchronised like the adapter's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from trainer.core.data import Pair
from trainer.core.losses import PairLogps
from trainer.core.sequences import (
    SequenceBatch,
    collate,
    encode_prompt,
    encode_reply,
    prefix_ids,
    reply_logps,
    with_profile,
)
from trainer.core.usermodel import GENERIC, UserIndex


@dataclass(frozen=True)
class EncodedPair:
    index: int  # position in its dataset: the key of the reference cache
    user_row: int  # row in the user model (0 = generic)
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    prompt_tokens_cut: int  # removed from the history by max_prompt_length
    reply_tokens_cut: int  # removed from the end of a reply by max_length
    weight: float = 1.0  # the pair's share of the loss


def encode_pair(tokenizer, pair: Pair, *, index: int, user_row: int, max_prompt_length: int, max_length: int,
                use_profile: bool, n_slots: int) -> EncodedPair:
    """Tokenise one pair; the prompt is shortened (history first), replies only if prompt + reply > max_length."""
    profile = pair.profile if use_profile else None
    prompt = encode_prompt(tokenizer, pair.prompt, profile=profile, max_prompt_length=max_prompt_length)
    messages = with_profile(pair.prompt, profile)
    chosen = encode_reply(tokenizer, messages, pair.chosen)
    rejected = encode_reply(tokenizer, messages, pair.rejected)
    # BOS and the soft-prompt slots count towards the total, as they take positions in the sequence.
    room = max_length - len(prefix_ids(tokenizer)) - n_slots - len(prompt.ids)
    cut = max(0, len(chosen) - room) + max(0, len(rejected) - room)
    return EncodedPair(index, user_row, prompt.ids, chosen[:room], rejected[:room], prompt.tokens_cut, cut,
                       pair.weight)


def encode_pairs(tokenizer, pairs: list[Pair], user_index: UserIndex | None, config, *,
                 progress: Callable[[int, int], None] | None = None) -> list[EncodedPair]:
    """Every pair of a dataset; users missing from ``user_index`` (or all, without one) get the generic row.

    ``progress(done, total)`` is called about a hundred times along the way.
    """
    n_slots = config.n_user_tokens if config.personalized else 0
    step = max(1, len(pairs) // 100)
    encoded = []
    for i, p in enumerate(pairs):
        encoded.append(encode_pair(tokenizer, p, index=i, user_row=user_index.row(p.user_id) if user_index else GENERIC,
                                   max_prompt_length=config.max_prompt_length, max_length=config.max_length,
                                   use_profile=config.use_profile, n_slots=n_slots))
        if progress is not None and ((i + 1) % step == 0 or i + 1 == len(pairs)):
            progress(i + 1, len(pairs))
    return encoded


def truncation_report(encoded: list[EncodedPair]) -> dict:
    return {"prompts_truncated": sum(e.prompt_tokens_cut > 0 for e in encoded),
            "prompt_tokens_cut": sum(e.prompt_tokens_cut for e in encoded),
            "reply_tokens_cut": sum(e.reply_tokens_cut for e in encoded)}


class PreferenceModel(nn.Module):
    """LM (with adapter) + optional user model; forward gives reply log-probs of a sequence batch."""

    def __init__(self, lm: nn.Module, user_model: nn.Module | None, tokenizer):
        super().__init__()
        self.lm = lm
        self.user_model = user_model
        self.prefix = prefix_ids(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @property
    def n_slots(self) -> int:
        return 0 if self.user_model is None else self.user_model.n_tokens

    def forward(self, batch: SequenceBatch, user_rows: torch.Tensor | None = None,
                soft_prompt: torch.Tensor | None = None) -> torch.Tensor:
        """Reply log-probs (N,); the soft prompt comes from ``user_rows`` (N,) or is given as (N, T, H)."""
        if soft_prompt is None and batch.n_slots:
            soft_prompt = self.user_model(user_rows)  # (N, T, H)
        return reply_logps(self.lm, batch, soft_prompt)

    def sequences(self, pairs: list[EncodedPair], *, with_slots: bool) -> SequenceBatch:
        """[chosen_1..B, rejected_1..B] as one batch."""
        items = [(p.prompt_ids, reply) for p, reply in _replies(pairs)]
        return collate(items, prefix=self.prefix, n_slots=self.n_slots if with_slots else 0, pad_id=self.pad_id)


def policy_logps(model, pairs: list[EncodedPair], *, alpha: float, device,
                 user_rows: list[int] | None = None) -> tuple[PairLogps | None, PairLogps | None]:
    """(personal, generic) log-probs for a micro-batch in ONE forward pass of ``model`` (maybe DDP-wrapped).

    Without a user model the generic term is the plain LM with no soft prompt.
    ``user_rows`` overrides each pair's own row (evaluation of unseen users).
    """
    core = model.module if hasattr(model, "module") else model
    B = len(pairs)
    if core.user_model is None:
        batch = core.sequences(pairs, with_slots=False).to(device)
        logps = model(batch)  # (2B,)
        return None, PairLogps(logps[:B], logps[B:])
    rows = [p.user_row for p in pairs] if user_rows is None else user_rows
    terms = ([rows] if alpha > 0 else []) + ([[GENERIC] * B] if alpha < 1 else [])
    items = [(p.prompt_ids, reply) for _ in terms for p, reply in _replies(pairs)]
    batch = collate(items, prefix=core.prefix, n_slots=core.n_slots, pad_id=core.pad_id).to(device)
    row_tensor = torch.tensor([r for t in terms for r in t + t], device=device)  # (2B * terms,)
    logps = model(batch, row_tensor)  # (2B * terms,)
    out = [PairLogps(logps[2 * B * k: 2 * B * k + B], logps[2 * B * k + B: 2 * B * (k + 1)]) for k in range(len(terms))]
    personal = out[0] if alpha > 0 else None
    generic = out[-1] if alpha < 1 else None
    return personal, generic


def _replies(pairs: list[EncodedPair]):
    """(pair, reply) in the [chosen_1..B, rejected_1..B] order of ``PreferenceModel.sequences``."""
    return [(p, p.chosen_ids) for p in pairs] + [(p, p.rejected_ids) for p in pairs]
