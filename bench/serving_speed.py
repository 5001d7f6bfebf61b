"""Serving speed of personalized generation, in one process on this machine.

    python -m bench serving_speed [--model PATH] [--tokens 96] [--users 8]

1. plain ``generate()`` of the base model (transformers, greedy, KV cache)
   against our personalized path on the same prompt: a version saved and
   loaded the way the worker does it (LoRA merged into the weights) with one
   user's cached soft prompt, through the batch scheduler with one request;
2. aggregate tokens/s with N concurrent users of different vectors (one
   batched forward pass) against one user alone;
3. seconds to refit one user's vectors from 20 pairs (fast fit, LoRA frozen): the default
   linearised fit against full-batch Adam steps;
4. memory per additional user: their vectors, and the KV cache a concurrent
   request adds per token.

The version is built with an untrained adapter and user model: speed does not
depend on the values of the weights. Both sides are forced to produce exactly
``--tokens`` tokens (EOS ignored) so the counts match.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.figures import Figure, default_model
from trainer.core.artifacts import load_run, save_run
from trainer.core.batch_generation import BatchScheduler, GenerationRequest
from trainer.core.config import FastFitConfig, TrainConfig
from trainer.core.fastfit import fast_fit
from trainer.core.hardware import describe_device
from trainer.core.loop import build_model, load_base
from trainer.core.usermodel import UserIndex
from users.synthetic.pairs import make_pairs
from users.synthetic.personas import sample_population
from users.synthetic.prompts import DEFAULT_PROMPTS

PROMPT = [{"role": "user", "content": "Write a detailed essay about the history of bread."}]


def never_eos() -> None:
    """Our side ignores EOS (the plain side uses min_new_tokens), so both produce exactly the same count."""
    import trainer.core.batch_generation as bg

    bg._eos_ids = lambda model, tokenizer: set()


def plain_generate(model, tokenizer, tokens: int) -> float:
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt")
    if not torch.is_tensor(ids):
        ids = ids["input_ids"]
    ids = ids.to(model.device)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, min_new_tokens=tokens,
                             do_sample=False, pad_token_id=tokenizer.eos_token_id)
    seconds = time.perf_counter() - start
    assert out.shape[1] - ids.shape[1] == tokens
    return tokens / seconds


def scheduled(scheduler, soft_prompts: list, tokens: int) -> tuple[float, list[int]]:
    """Aggregate tokens/s of len(soft_prompts) concurrent requests; returns (tok/s, batch sizes seen)."""
    requests = [GenerationRequest(PROMPT, s, max_new_tokens=tokens, temperature=0.0) for s in soft_prompts]
    start = time.perf_counter()
    for r in requests:
        scheduler.submit(r)
    for r in requests:
        for _ in r.stream(timeout=600):
            pass
    seconds = time.perf_counter() - start
    total = sum(r.tokens for r in requests)
    return total / seconds, sorted({r.batch_size for r in requests})


def kv_bytes_per_token(model, tokenizer) -> int:
    from transformers import DynamicCache

    ids = tokenizer("hello world, a few tokens", return_tensors="pt")["input_ids"].to(model.device)
    cache = DynamicCache()
    with torch.inference_mode():
        model(input_ids=ids, past_key_values=cache, use_cache=True)
    total = 0
    for layer in getattr(cache, "layers", []):
        total += layer.keys.nbytes + layer.values.nbytes
    if not total:  # older cache layout
        total = sum(k.nbytes + v.nbytes for k, v in zip(cache.key_cache, cache.value_cache))
    return total // ids.shape[1]


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a transformers folder or hub id (default: the bundled SmolLM2)")
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (fp32 weights on either)")
    ap.add_argument("--adam-steps", type=int, default=2,
                    help="Adam fast-fit steps timed for the comparison (each is a forward and backward pass)")
    args = ap.parse_args(argv)
    args.model = args.model or default_model()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = TrainConfig(seed=0)
    users = [f"user{i + 1}" for i in range(args.users)]
    print(f"model {args.model}; {args.tokens} tokens per reply, greedy, fp32, {describe_device(args.device)}",
          flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        lm, tokenizer = load_base(args.model)
        core = build_model(lm, tokenizer, config, n_users=len(users))
        save_run(Path(tmp) / "run", core, UserIndex(users), config, base_model=args.model)
        del core, lm
        served = load_run(Path(tmp) / "run", merge=True, device=args.device)
        # unmerged: fast fit needs the adapter to disable for the reference
        fitting = load_run(Path(tmp) / "run", device=args.device)
    base, base_tok = load_base(args.model)
    base.to(args.device).eval()
    merged = served.model.lm
    softs = [served.soft_prompt(u) for u in users]
    scheduler = BatchScheduler(merged, served.tokenizer, max_batch=args.users, max_wait=0.05)

    never_eos()
    plain_generate(base, base_tok, 8)  # warm-up
    scheduled(scheduler, softs[:1], 8)
    plain, single, many = [], [], []
    for _ in range(args.repeats):  # interleaved, so a noisy neighbour hits both sides alike
        plain.append(plain_generate(base, base_tok, args.tokens))
        single.append(scheduled(scheduler, softs[:1], args.tokens)[0])
        rate, sizes = scheduled(scheduler, softs, args.tokens)
        many.append(rate)
    scheduler.close()
    p, s, m = statistics.median(plain), statistics.median(single), statistics.median(many)
    print("\n| measurement | tokens/s (median of %d) | ratio | target |" % args.repeats)
    print("|---|---|---|---|")
    print(f"| plain generate(), base model | {p:.1f} | 1.00 | |")
    print(f"| personalized: merged LoRA + cached soft prompt, 1 user | {s:.1f} | {s / p:.2f}x plain | >= 0.95x |")
    print(f"| {args.users} concurrent users, different vectors (batch sizes {sizes}) | {m:.1f} aggregate | "
          f"{m / s:.2f}x one user | >= 3x |")

    pairs = make_pairs(sample_population(1, seed=3, prefix="new"), DEFAULT_PROMPTS, conversations_per_user=24,
                       seed=4, system="You are a helpful assistant.", detailed_sentences=(2, 2))[:20]
    fits = {}
    for method, fit in (("linear", FastFitConfig()), ("adam", FastFitConfig(method="adam", steps=args.adam_steps))):
        start = time.perf_counter()
        report = fast_fit(fitting.model, fitting.tokenizer, UserIndex(), fitting.config, pairs[0].user_id, pairs,
                          fit=fit, device=args.device)
        fits[method] = (time.perf_counter() - start, report)
    (lin, lin_report), (adam, adam_report) = fits["linear"], fits["adam"]
    per_step = adam / (args.adam_steps + 1)  # the reference pass costs about as much as a step
    print(f"| refit one user's vectors from {lin_report.pairs} pairs (default: one linearised round) | "
          f"{lin:.1f} s, {lin_report.passes} model passes | loss {lin_report.losses[0]:.3f} -> "
          f"{lin_report.losses[-1]:.3f} | |")
    print(f"| the same with full-batch Adam (the obvious alternative) | {adam:.1f} s for {args.adam_steps} steps, "
          f"about {per_step * 11:.0f} s for 10 ({per_step * 11 / lin:.1f}x the linear refit) | loss "
          f"{adam_report.losses[0]:.3f} -> {adam_report.losses[-1]:.3f} after {args.adam_steps} steps | |")

    vectors = softs[0].nbytes
    kv = kv_bytes_per_token(merged, served.tokenizer)
    table = served.model.user_model.offsets.nbytes // served.model.user_model.n_users
    print(f"| memory per additional user: vectors | {vectors / 1024:.1f} KiB ({tuple(softs[0].shape)} fp32; "
          f"{table / 1024:.1f} KiB as a row of the user table) | | |")
    print(f"| memory per concurrent request: KV cache | {kv / 1024:.1f} KiB per token "
          f"({kv * 512 / 2**20:.1f} MiB at 512 tokens) | | |")
    weights = sum(t.nbytes for t in merged.parameters())
    print(f"| shared weights (merged, once for everyone) | {weights / 2**20:.0f} MiB | | |")
    return [
        Figure("serving_speed", "personalized / plain generate(), 1 user", f"{s / p:.2f}x ({s:.1f} / {p:.1f} tokens/s)",
               ">= 0.95x", s / p >= 0.95),
        Figure("serving_speed", f"{args.users} users batched / 1 user, aggregate tokens/s", f"{m / s:.2f}x", ">= 3x",
               m / s >= 3),
        Figure("serving_speed", f"refit from {lin_report.pairs} pairs, linearised (Adam x10 / linear)",
               f"{lin:.1f} s ({per_step * 11 / lin:.1f}x)", "", None),
        Figure("serving_speed", "peak memory of this process (max RSS; the refit dominates)",
               f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB"),
    ]
