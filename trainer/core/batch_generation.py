"""Batched streaming generation: several users' requests in one forward pass.

P-RLHF shares the weights between users, so requests with different soft
prompts (or none) can run together: each row of the batch gets its own
vectors in its slots, its own sampling settings and its own stop condition.
``BatchScheduler`` owns a model and one thread; callers ``submit`` a request
and read its text deltas from ``request.deltas``. The thread waits at most
``max_wait`` seconds for more requests to fill a batch, then prefills them
together and decodes them in lock-step until every row has finished; requests
that arrive meanwhile form the next batch.

Pure torch and threading: no Django, so it can be benchmarked alone.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from transformers import DynamicCache

from trainer.core.generation import _Detokenizer, _eos_ids, _sample
from trainer.core.sequences import collate, embed_inputs, encode_prompt, prefix_ids

END = None  # put on ``deltas`` after the last piece of text


class EngineClosed(RuntimeError):
    """The model a request waited for was closed (unloaded) before the request was written."""


@dataclass
class GenerationRequest:
    messages: list[dict]
    soft_prompt: torch.Tensor | None = None  # (T, H) or None for the plain model
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.0  # > 1 makes tokens already in the prompt or reply less likely (vLLM's rule)
    seed: int | None = None
    max_prompt_length: int | None = None
    prompt_ids: list[int] | None = None  # the templated, cut prompt; encoded on submit, off the shared thread
    should_stop: Callable[[], bool] | None = None  # checked by the scheduler thread before every token
    deltas: queue.Queue = field(default_factory=queue.Queue)  # text pieces, then END
    cancelled: bool = False  # set by the caller's thread: cheaper than a callback
    error: BaseException | None = None
    tokens: int = 0  # generated tokens, EOS excluded
    cut: bool = False  # ended by max_new_tokens rather than by EOS: the text stops mid-way
    batch_size: int = 0  # how many requests shared the forward pass (for the record)

    def stream(self, timeout: float | None = None):
        """The text deltas as an iterator; raises what the scheduler raised."""
        while True:
            piece = self.deltas.get(timeout=timeout)
            if piece is END:
                if self.error is not None:
                    raise self.error
                return
            yield piece


def encoded(tokenizer, request: GenerationRequest) -> list[int]:
    """The request's prompt ids, templated and cut to its budget once."""
    if request.prompt_ids is None:
        request.prompt_ids = encode_prompt(tokenizer, request.messages,
                                           max_prompt_length=request.max_prompt_length).ids
    return request.prompt_ids


def generate_batch(model, tokenizer, requests: list[GenerationRequest]) -> None:
    """Generate every request's reply in one batch, streaming deltas into each request's queue.

    Rows are left-padded; every row's soft prompt sits right after its BOS
    (the slot positions of ``collate``). Requests with and without soft prompts
    are mixed by giving the latter ``n_slots`` extra padding instead of slots.
    """
    if not requests:
        return
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    n_slots = max((r.soft_prompt.shape[0] for r in requests if r.soft_prompt is not None), default=0)
    prefix = prefix_ids(tokenizer)
    items = [(encoded(tokenizer, r), []) for r in requests]
    batch = collate(items, prefix=prefix, n_slots=n_slots, pad_id=pad_id).to(device)
    N = len(requests)
    if n_slots:
        hidden = model.get_input_embeddings().weight.shape[1]
        soft = torch.zeros((N, n_slots, hidden), device=device)  # (N, T, H)
        for i, r in enumerate(requests):
            if r.soft_prompt is None or r.soft_prompt.shape[0] != n_slots:
                # A plain row: its slots become padding, masked out of attention.
                batch.attention_mask[i] &= ~batch.slot_mask[i]
            else:
                soft[i] = r.soft_prompt.to(device)
        batch.position_ids = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)  # (N, L)
    else:
        soft = None
    eos_ids = _eos_ids(model, tokenizer)
    generators = [torch.Generator(device=device).manual_seed(r.seed) if r.seed is not None and r.temperature > 0
                  else None for r in requests]
    detoks = [_Detokenizer(tokenizer) for _ in requests]
    alive = [True] * N
    ended = [False] * N  # END already put: a row ends as soon as it stops, not when the whole batch does
    steps = [0] * N

    def end(i: int) -> None:
        alive[i] = False
        ended[i] = True
        requests[i].deltas.put(END)

    for r in requests:
        r.batch_size = N
    penalised = [i for i, r in enumerate(requests) if r.repetition_penalty != 1.0]
    seen = {i: torch.zeros(model.get_output_embeddings().weight.shape[0], dtype=torch.bool, device=device)
            for i in penalised}  # (V,) per penalised row: the ids in its prompt and reply so far
    for i in penalised:
        seen[i][torch.tensor(items[i][0], dtype=torch.long, device=device)] = True
        # The chat template ends every earlier message with the end-of-turn token: penalising it would keep the
        # model from ever ending its reply.
        seen[i][torch.tensor(sorted(eos_ids), dtype=torch.long, device=device)] = False
    try:
        with torch.inference_mode():
            attention = batch.attention_mask  # (N, L)
            positions = batch.position_ids[:, -1]  # (N,) last position of each row
            out = model(inputs_embeds=embed_inputs(model, batch, soft), attention_mask=attention,
                        position_ids=batch.position_ids, past_key_values=DynamicCache(), use_cache=True,
                        logits_to_keep=1)
            while any(alive):
                next_ids = torch.full((N,), pad_id, dtype=torch.long, device=device)  # (N,)
                logits = out.logits[:, -1]  # (N, V)
                for i in penalised:
                    if alive[i]:
                        penalise(logits[i], seen[i], requests[i].repetition_penalty)
                # Greedy rows share one argmax and one device sync instead of one each.
                greedy = logits.argmax(-1).tolist() if any(r.temperature <= 0 for r in requests) else None
                for i, r in enumerate(requests):
                    if not alive[i]:
                        continue
                    if r.cancelled or (r.should_stop is not None and r.should_stop()):
                        end(i)
                        continue
                    token = greedy[i] if r.temperature <= 0 else int(_sample(logits[i], r.temperature, r.top_p,
                                                                              generators[i]))
                    if token in eos_ids:
                        end(i)
                        continue
                    next_ids[i] = token
                    if i in seen:
                        seen[i][token] = True
                    r.tokens += 1
                    steps[i] += 1
                    delta = detoks[i].push(token)
                    if delta:
                        r.deltas.put(delta)
                    if steps[i] >= r.max_new_tokens:
                        r.cut = True
                        end(i)
                if not any(alive):
                    break
                # Finished rows still take a step (their token is padding, masked out): cheaper than reshaping
                # the cache.
                step_mask = torch.tensor(alive, dtype=torch.long, device=device).view(N, 1)  # (N, 1)
                attention = torch.cat([attention, step_mask], dim=1)  # (N, L + t)
                positions = positions + 1
                out = model(input_ids=next_ids.view(N, 1), past_key_values=out.past_key_values,
                            attention_mask=attention, position_ids=positions.view(N, 1), use_cache=True,
                            logits_to_keep=1)
    except BaseException as exc:  # every caller still waiting must hear about it
        for i, r in enumerate(requests):
            if not ended[i]:
                r.error = exc
        raise
    finally:
        for i, r in enumerate(requests):
            if not ended[i]:
                r.deltas.put(END)


def penalise(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> None:
    """Repetition penalty in place on (V,) logits, as vLLM and transformers apply it: each token id already
    seen has a positive logit divided by ``penalty`` and a negative one multiplied by it."""
    picked = logits[seen]
    logits[seen] = torch.where(picked > 0, picked / penalty, picked * penalty)


class BatchScheduler:
    """One model, one thread, batches of at most ``max_batch`` requests gathered within ``max_wait`` seconds."""

    def __init__(self, model, tokenizer, *, max_batch: int = 8, max_wait: float = 0.02, name: str = "batcher"):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.max_wait = max_batch, max_wait
        self._inbox: queue.Queue = queue.Queue()
        self._held: list[GenerationRequest] = []
        self._closed = threading.Event()
        self._accepting = threading.Lock()  # a submit and the close that ends the inbox do not interleave
        self.batches: list[int] = []  # sizes of the batches run so far (most recent 1000)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest) -> GenerationRequest:
        """Queue a request; its prompt is templated here, in the caller's thread, not the shared one."""
        encoded(self.tokenizer, request)
        with self._accepting:
            if self._closed.is_set():
                raise EngineClosed("this model was unloaded (a newer version took its place)")
            self._inbox.put(request)
        return request

    @property
    def closed(self) -> bool:
        """True once ``close`` has begun: no request is taken any more."""
        return self._closed.is_set()

    def close(self) -> None:
        """Stop taking requests; the batch being written finishes, and every request still waiting (in the
        inbox or held back for a batch of its own) ends at once with ``EngineClosed`` as its error, so nobody
        waits for a model that is gone."""
        with self._accepting:
            self._closed.set()
            self._inbox.put(None)
        self._thread.join(timeout=30)

    def _fail_waiting(self) -> None:
        """In the scheduler's thread, as it ends: every request that will not be written now ends with a reason."""
        with self._accepting:  # no submit slips in after the inbox is emptied
            waiting, self._held = list(self._held), []
            while True:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    waiting.append(item)
        for request in waiting:
            request.error = EngineClosed("the model this reply waited for was unloaded before it was written "
                                         "(a newer version was loaded in its place)")
            request.deltas.put(END)

    def _gather(self) -> list[GenerationRequest]:
        if self._held:  # prompts too long for the last batch: a batch of their own, next
            batch, self._held = self._held, []
            return batch
        first = self._inbox.get()
        if first is None:
            return []
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self._inbox.get(timeout=max(left, 0)) if left > 0 else self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._closed.set()
                break
            batch.append(item)
        return self._similar_lengths(batch)

    def _similar_lengths(self, batch: list[GenerationRequest]) -> list[GenerationRequest]:
        """Rows are padded to the longest prompt, so one long prompt among short ones makes every row pay for
        its prefill and its attention: keep the prompts up to twice the shortest (or 128 tokens more) and hold
        the rest for a batch of their own, which runs next."""
        shortest = min(len(r.prompt_ids or ()) for r in batch)
        limit = max(2 * shortest, shortest + 128)
        keep = [r for r in batch if len(r.prompt_ids or ()) <= limit]
        self._held = [r for r in batch if len(r.prompt_ids or ()) > limit]
        return keep

    def _loop(self) -> None:
        try:
            while not self._closed.is_set():
                batch = self._gather()
                if not batch:
                    continue
                self.batches = (self.batches + [len(batch)])[-1000:]
                try:
                    generate_batch(self.model, self.tokenizer, batch)
                except Exception:  # already handed to each request; keep serving the next batch
                    pass
        finally:
            self._fail_waiting()
