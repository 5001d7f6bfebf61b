"""Token sequences for training, evaluation and generation: one builder for all three.

Every sequence is laid out as

    [pad ... pad] BOS  slot*T_u  <chat-templated prompt>  <reply>

left-padded, so all replies end at the last position and the model only has to
project the last ``max(reply_len) + 1`` hidden states onto the vocabulary
(``logits_to_keep``) instead of the whole sequence. The ``T_u`` slots hold a
placeholder id; ``embed_inputs`` overwrites their embeddings with the user's
vectors, so the user identity never travels through text. Position ids count
real tokens only, so a row's positions do not depend on how much padding its
batch needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.core.logprobs import plain_head, token_logps

PROFILE_PREFIX = "About the user: "


def with_profile(messages: list[dict], profile: str | None) -> list[dict]:
    """Put a textual profile into the prompt as plain text (a system message).

    Applied before templating, so the personal and the generic term of the loss
    (and the reference) all see exactly the same text.
    """
    if not profile:
        return list(messages)
    if messages and messages[0].get("role") == "system":
        first = {"role": "system", "content": f"{messages[0]['content']}\n{PROFILE_PREFIX}{profile}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": PROFILE_PREFIX + profile}, *messages]


def prefix_ids(tokenizer) -> list[int]:
    """The BOS id in front of the soft prompt, or nothing for a tokenizer without one."""
    return [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]


def _template_ids(tokenizer, messages: list[dict], *, generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    # Templates that open with BOS themselves (ChatML's <|im_start|> is SmolLM2's BOS) would get it
    # twice after prefix_ids; a doubled BOS visibly degrades the untrained model's answers. Dropping
    # it here makes a sequence with no soft prompt exactly the standard chat template.
    if ids and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id:
        ids = ids[1:]
    return ids


@dataclass(frozen=True)
class EncodedPrompt:
    ids: list[int]
    tokens_cut: int  # how many prompt tokens the length limit removed (history first)
    messages_cut: int  # how many whole history messages were dropped


def encode_prompt(tokenizer, messages: list[dict], *, profile: str | None = None,
                  max_prompt_length: int | None = None) -> EncodedPrompt:
    """Chat-template ``messages`` with the generation prompt; fit it into ``max_prompt_length``.

    When too long, drop the oldest history messages first (keeping a system
    message and the last message, and opening on a user message), then, if the
    last message alone is still too long, cut tokens from the left. The reply is
    never touched here. The fewest messages are dropped; the cut is found by
    bisection, so a history of n messages is templated O(log n) times, not n.
    """
    messages = with_profile(messages, profile)
    ids = _template_ids(tokenizer, messages, generation_prompt=True)
    if max_prompt_length is None or len(ids) <= max_prompt_length:
        return EncodedPrompt(ids, 0, 0)
    full_len = len(ids)
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    history = messages[len(head):]
    # Where the kept history may start: at a user message, or at the last message when nothing else fits.
    starts = [k for k in range(1, len(history)) if history[k]["role"] == "user" or k == len(history) - 1]
    lo, hi, fitted = 0, len(starts) - 1, None
    while lo <= hi:  # the smallest start whose prompt fits; dropping more never makes a prompt longer
        mid = (lo + hi) // 2
        candidate = _template_ids(tokenizer, head + history[starts[mid]:], generation_prompt=True)
        if len(candidate) <= max_prompt_length:
            fitted, hi = (starts[mid], candidate), mid - 1
        else:
            lo = mid + 1
    if fitted is None and starts:
        fitted = (starts[-1], _template_ids(tokenizer, head + history[starts[-1]:], generation_prompt=True))
    dropped, ids = fitted if fitted else (0, ids)
    if len(ids) > max_prompt_length:
        ids = ids[len(ids) - max_prompt_length:]
    return EncodedPrompt(ids, full_len - len(ids), dropped)


def encode_reply(tokenizer, prompt_messages: list[dict], reply_messages: list[dict]) -> list[int]:
    """Token ids of the reply exactly as the template renders it after the prompt, ending with EOS.

    The reply text is tokenized on its own (not merged with the prompt), which is
    what generation sees: it continues from the prompt ids.
    """
    prompt_text = tokenizer.apply_chat_template(prompt_messages, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(prompt_messages + reply_messages, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ValueError("The chat template renders the reply in a way that changes the prompt text.")
    ids = tokenizer(full_text[len(prompt_text):], add_special_tokens=False).input_ids
    eos = tokenizer.eos_token_id
    if eos in ids:  # drop the template's trailing newline: generation stops at EOS
        ids = ids[: len(ids) - ids[::-1].index(eos)]
    else:
        ids = ids + [eos]
    return ids


@dataclass
class SequenceBatch:
    """N sequences, left-padded to length L; replies occupy the last R positions at most."""

    input_ids: torch.Tensor  # (N, L) long; slots and padding hold pad_id
    attention_mask: torch.Tensor  # (N, L) long, 1 on BOS/slots/text
    position_ids: torch.Tensor  # (N, L) long, 0 at BOS
    slot_mask: torch.Tensor  # (N, L) bool, True on the T_u soft-prompt slots
    labels: torch.Tensor  # (N, R) long, reply ids right-aligned, pad elsewhere
    label_mask: torch.Tensor  # (N, R) float, 1 on reply tokens
    n_slots: int
    reply_index: torch.Tensor  # (2, M) long: the (row, position in R) of each reply token, found on the host
    # when the batch is built, so that picking the reply tokens on the device never waits to learn how many

    def to(self, device) -> "SequenceBatch":
        return SequenceBatch(*(t.to(device) if torch.is_tensor(t) else t for t in (
            self.input_ids, self.attention_mask, self.position_ids, self.slot_mask, self.labels,
            self.label_mask, self.n_slots, self.reply_index)))

    @property
    def num_tokens(self) -> torch.Tensor:
        return self.attention_mask.sum()


def collate(items: list[tuple[list[int], list[int]]], *, prefix: list[int], n_slots: int,
            pad_id: int) -> SequenceBatch:
    """Build a left-padded batch from (prompt_ids, reply_ids) items; reply may be empty (generation)."""
    rows = [prefix + [pad_id] * n_slots + p + r for p, r in items]
    L = max(len(r) for r in rows)
    R = max(len(r) for _, r in items)
    n = len(items)
    input_ids = torch.full((n, L), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, L), dtype=torch.long)
    slot_mask = torch.zeros((n, L), dtype=torch.bool)
    labels = torch.full((n, R), pad_id, dtype=torch.long)
    label_mask = torch.zeros((n, R), dtype=torch.float32)
    for i, (row, (_, reply)) in enumerate(zip(rows, items)):
        start = L - len(row)
        input_ids[i, start:] = torch.tensor(row)
        attention_mask[i, start:] = 1
        slot_mask[i, start + len(prefix): start + len(prefix) + n_slots] = True
        if reply:
            labels[i, R - len(reply):] = torch.tensor(reply)
            label_mask[i, R - len(reply):] = 1.0
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (N, L)
    reply_index = torch.tensor([[i for i, (_, r) in enumerate(items) for _ in r],
                                [R - len(r) + j for _, r in items for j in range(len(r))]], dtype=torch.long)
    return SequenceBatch(input_ids, attention_mask, position_ids, slot_mask, labels, label_mask, n_slots,
                         reply_index)


def embed_inputs(model, batch: SequenceBatch, soft_prompt: torch.Tensor | None) -> torch.Tensor:
    """Token embeddings with the slots replaced by ``soft_prompt`` (N, T_u, H); returns (N, L, H)."""
    return place_vectors(model.get_input_embeddings()(batch.input_ids), batch, soft_prompt)


def place_vectors(embeds: torch.Tensor, batch: SequenceBatch, soft_prompt: torch.Tensor | None) -> torch.Tensor:
    """``embeds`` (N, L, H) of ``batch.input_ids`` with the slots replaced by ``soft_prompt`` (N, T_u, H).

    The one placement of a person's vectors: training, evaluation, the HF
    generation path and the embeddings sent to vLLM all go through here.
    """
    if batch.n_slots == 0:
        return embeds
    if soft_prompt is None or soft_prompt.shape[:2] != (batch.input_ids.shape[0], batch.n_slots):
        raise ValueError(f"soft_prompt must be (N={batch.input_ids.shape[0]}, T={batch.n_slots}, H)")
    # masked_scatter fills slots in row-major order, i.e. row n gets soft_prompt[n] in slot order,
    # and stays differentiable with respect to the user vectors.
    return embeds.masked_scatter(batch.slot_mask.unsqueeze(-1), soft_prompt.to(embeds.device, embeds.dtype))


def prompt_embeddings(embedding: torch.Tensor, tokenizer, prompt_ids: list[int],
                      soft_prompt: torch.Tensor | None) -> torch.Tensor:
    """(L, H) input embeddings of one prompt laid out as for training: BOS, the (T_u, H) vectors (none for the
    plain model), the templated prompt. ``embedding`` is the model's (V, H) input embedding matrix: this is
    what an engine that takes prompt embeddings (vLLM) is sent in place of token ids."""
    n_slots = 0 if soft_prompt is None else soft_prompt.shape[0]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batch = collate([(prompt_ids, [])], prefix=prefix_ids(tokenizer), n_slots=n_slots, pad_id=pad_id)
    embeds = torch.nn.functional.embedding(batch.input_ids, embedding)  # (1, L, H), no padding in one row
    soft = None if soft_prompt is None else soft_prompt.unsqueeze(0)  # (1, T, H)
    return place_vectors(embeds, batch, soft)[0]


def reply_logps(model, batch: SequenceBatch, soft_prompt: torch.Tensor | None) -> torch.Tensor:
    """Summed log-probability of each row's reply tokens; returns (N,) float32.

    Runs the decoder, then projects only the real reply positions onto the
    vocabulary (``logprobs.token_logps``); models whose logits are not a plain
    linear projection take the ordinary logits route.
    """
    R = batch.labels.shape[1]
    embeds = embed_inputs(model, batch, soft_prompt)  # (N, L, H)
    head = plain_head(model)
    if head is None:
        return _reply_logps_from_logits(model, batch, embeds)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                                position_ids=batch.position_ids, use_cache=False).last_hidden_state  # (N, L, H)
    hidden = hidden[:, -R - 1:-1]  # (N, R, H): position t predicts token t+1
    rows, positions = batch.reply_index  # (M,) each: which sequence, which reply position
    logps = token_logps(hidden[rows, positions], head.weight.to(hidden.dtype),
                        batch.labels[rows, positions])  # (M,) reply tokens only
    return torch.zeros(hidden.shape[0], dtype=logps.dtype, device=logps.device).index_add(0, rows, logps)  # (N,)


def _reply_logps_from_logits(model, batch: SequenceBatch, embeds: torch.Tensor) -> torch.Tensor:
    R = batch.labels.shape[1]
    out = model(inputs_embeds=embeds, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                use_cache=False, logits_to_keep=R + 1)
    logits = out.logits[:, :-1, :].float()  # (N, R, V)
    # gather - logsumexp avoids materialising a second (N, R, V) log-softmax tensor.
    picked = torch.gather(logits, 2, batch.labels.unsqueeze(-1)).squeeze(-1)  # (N, R)
    return ((picked - logits.logsumexp(-1)) * batch.label_mask).sum(-1)  # (N,)
