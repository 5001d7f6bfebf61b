"""Streaming generation with a KV cache and an optional soft prompt.

The prompt is laid out by the same builder as training (``sequences.collate``:
BOS, the user's vectors, the chat-templated prompt), prefilled once through
``inputs_embeds``, then decoded one token at a time from the cache, so a reply
costs linear rather than quadratic time in its length.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from transformers import DynamicCache

from trainer.core.sequences import collate, embed_inputs, encode_prompt, prefix_ids


def _sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Pick the next token from (V,) logits: greedy at temperature 0, else nucleus sampling."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (V,)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)  # (V,)
        # Keep the smallest set whose mass reaches top_p: a token stays if the mass before it is < top_p.
        keep = (sorted_probs.cumsum(-1) - sorted_probs) < top_p
        sorted_probs = sorted_probs * keep
        choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
        return order[choice].squeeze(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _eos_ids(model, tokenizer) -> set[int]:
    """The tokenizer's EOS plus any the model's generation config lists (chat models often add one)."""
    ids = {tokenizer.eos_token_id}
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
    return {i for i in ids if i is not None}


class _Detokenizer:
    """Incremental decoding that only emits text once it no longer ends in a partial character.

    Decodes a short window of recent ids rather than the whole reply, and emits
    the part of the window's text that is new since the last emission.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
        before = decode(self.ids[self.prefix_offset:self.read_offset])
        after = decode(self.ids[self.prefix_offset:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return after[len(before):]
        return ""


def stream_generate(model, tokenizer, messages: list[dict], *, soft_prompt: torch.Tensor | None = None,
                    max_new_tokens: int = 256, temperature: float = 0.7, top_p: float = 0.9,
                    seed: int | None = None, should_stop: Callable[[], bool] | None = None,
                    profile: str | None = None, max_prompt_length: int | None = None) -> Iterator[str]:
    """Yield the reply to ``messages`` as text deltas.

    soft_prompt: (T_u, H) user vectors placed right after BOS, or None for the
    plain model. Stops at EOS, after ``max_new_tokens`` or as soon as
    ``should_stop()`` returns True (checked before every token).
    """
    prompt = encode_prompt(tokenizer, messages, profile=profile, max_prompt_length=max_prompt_length)
    n_slots = 0 if soft_prompt is None else soft_prompt.shape[0]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    batch = collate([(prompt.ids, [])], prefix=prefix_ids(tokenizer), n_slots=n_slots, pad_id=pad_id).to(device)
    eos_ids = _eos_ids(model, tokenizer)
    generator = None
    if seed is not None and temperature > 0:
        generator = torch.Generator(device=device).manual_seed(seed)
    detok = _Detokenizer(tokenizer)
    with torch.inference_mode():
        soft = None if soft_prompt is None else soft_prompt.to(device).unsqueeze(0)  # (1, T, H)
        cache = DynamicCache()
        length = batch.input_ids.shape[1]
        out = model(inputs_embeds=embed_inputs(model, batch, soft), attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        for step in range(max_new_tokens):
            if should_stop is not None and should_stop():
                return
            next_id = _sample(out.logits[0, -1], temperature, top_p, generator)  # () long
            token = int(next_id)
            if token in eos_ids:
                return
            delta = detok.push(token)
            if delta:
                yield delta
            if step == max_new_tokens - 1:
                return
            length += 1
            out = model(input_ids=next_id.view(1, 1), past_key_values=out.past_key_values,
                        attention_mask=torch.ones((1, length), dtype=torch.long, device=device),
                        position_ids=torch.tensor([[length - 1]], device=device), use_cache=True,
                        logits_to_keep=1)


def generate_text(model, tokenizer, messages: list[dict], **kwargs) -> str:
    """The whole reply as one string (evaluation and tests)."""
    return "".join(stream_generate(model, tokenizer, messages, **kwargs))
