"""Reference log-probs: the same LM with its adapter disabled and no user vectors.

Computed once per pair and cached, so there is never a second copy of the model
and no pair pays for the reference twice (epochs, resumed runs, evaluation).
"""

from __future__ import annotations

import contextlib

import torch

from trainer.core.losses import PairRefs
from trainer.core.policy import EncodedPair, PreferenceModel


def adapter_disabled(lm):
    """peft's context that turns the LoRA off; a plain LM (no adapter) is its own reference."""
    return lm.disable_adapter() if hasattr(lm, "disable_adapter") else contextlib.nullcontext()


class ReferenceCache:
    """pair index -> (ref chosen logp, ref rejected logp, chosen length, rejected length), on the CPU."""

    def __init__(self):
        self._values: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._values)

    @torch.no_grad()
    def fill(self, core: PreferenceModel, pairs: list[EncodedPair], *, device, batch_size: int = 16,
             autocast=contextlib.nullcontext) -> None:
        """Compute what is missing, ``batch_size`` pairs per forward pass."""
        todo = [p for p in pairs if p.index not in self._values]
        was_training = core.training
        core.eval()  # no LoRA dropout in the reference (it is off anyway, but be explicit)
        try:
            with adapter_disabled(core.lm):
                for start in range(0, len(todo), batch_size):
                    chunk = todo[start:start + batch_size]
                    batch = core.sequences(chunk, with_slots=False).to(device)
                    with autocast():
                        logps = core(batch).float().cpu()  # (2B,)
                    lengths = batch.label_mask.sum(-1).cpu()  # (2B,)
                    B = len(chunk)
                    for i, p in enumerate(chunk):
                        self._values[p.index] = torch.stack([logps[i], logps[B + i], lengths[i], lengths[B + i]])
        finally:
            core.train(was_training)

    def get(self, pairs: list[EncodedPair], device) -> PairRefs:
        rows = torch.stack([self._values[p.index] for p in pairs]).to(device)  # (B, 4)
        return PairRefs(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3])

    def state_dict(self) -> dict:
        return {"index": list(self._values), "values": torch.stack(list(self._values.values()))
                if self._values else torch.zeros(0, 4)}

    def load_state_dict(self, state: dict) -> None:
        self._values = {int(i): v for i, v in zip(state["index"], state["values"])}
