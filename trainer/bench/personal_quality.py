"""Do personalized generations move towards each user's hidden preference?

    python -m trainer.bench.personal_quality [--model PATH] [--users 10] [--conversations 12]

A synthetic population with two opposing groups on reply length (70 % prefer
detailed replies, 30 % concise ones). P-DPO (individual user model) is trained
on their pairs with the bundled model (the settings of
``trainer.core.bench_personalization``); then, for held-out prompts, each user's
reply from their own vectors, the reply from the generic vectors and the base
model's reply (adapter off, no soft prompt) are generated (greedy, in batched
forward passes), and the user's hidden rule (without noise) judges them.
Printed per group: the share of prompts where the rule prefers the
personalized reply over each of the other two (ties count as not preferred),
and the average length of the three replies. Sizes are small so that it
finishes on 2 CPU cores in about 20 minutes; they are printed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import defaultdict

import torch

from trainer.core.batch_generation import GenerationRequest, generate_batch
from trainer.core.config import TrainConfig
from trainer.core.loop import train
from trainer.core.reference import adapter_disabled
from trainer.core.synthetic import (PRISM_PROMPTS, SHORT_SYSTEM, judge_prefers, make_pairs, prompts_or_default,
                                    sample_population)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="data/models/SmolLM2-135M-Instruct")
    ap.add_argument("--prompts", default=str(PRISM_PROMPTS))
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--conversations", type=int, default=12, help="training pairs per user")
    ap.add_argument("--held-out", type=int, default=4, help="held-out prompts per user")
    ap.add_argument("--steps", type=int, default=36, help="optimizer steps of 8 pairs")
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--lr-lora", type=float, default=1e-3)
    ap.add_argument("--lr-user", type=float, default=5e-2)
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    args = ap.parse_args(argv)
    prompts = prompts_or_default(args.prompts)
    rng = random.Random(7)
    rng.shuffle(prompts)
    held_out, train_prompts = prompts[:max(8, args.held_out * 2)], prompts[max(8, args.held_out * 2):]
    people = sample_population(args.users, dimension="length", seed=0)
    pairs = make_pairs(people, train_prompts, conversations_per_user=args.conversations, seed=1,
                       system=SHORT_SYSTEM, detailed_sentences=(2, 3))
    config = TrainConfig(batch_size=8, micro_batch_size=4, epochs=args.steps * 8 / len(pairs), warmup_steps=0,
                         lr_lora=args.lr_lora, lr_user=args.lr_user, lora_dropout=0.0, max_prompt_length=128,
                         max_length=320, log_every=10, seed=0, device="cpu", bf16=args.precision == "bf16")
    print(f"model {args.model}; {len(people)} users ({', '.join(sorted({p.group for p in people}))}), "
          f"{len(pairs)} training pairs, {args.steps} steps of {config.batch_size}, {args.precision}, "
          f"lr LoRA {config.lr_lora} / "
          f"user {config.lr_user}; {args.held_out} held-out prompts per user, {args.tokens} new tokens, greedy",
          flush=True)
    start = time.perf_counter()
    def progress(step: int, total: int, metrics: dict | None) -> None:
        if step % 5 == 0 or step == total:
            print(f"  step {step}/{total}, {time.perf_counter() - start:.0f} s", flush=True)

    result = train(config, args.model, pairs, progress=progress, log=lambda msg: print("  ", msg, flush=True))
    print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
    model, tokenizer, index = result.model, result.tokenizer, result.user_index
    model.eval()
    lm = model.lm
    start = time.perf_counter()
    others = ("generic", "base")
    wins = {o: defaultdict(list) for o in others}
    lengths = defaultdict(lambda: {"personal": [], "generic": [], "base": []})
    with torch.no_grad():
        generic = model.user_model(torch.tensor([0]))[0]
        for person in people:
            mine = model.user_model(torch.tensor([index.row(person.user_id)]))[0]
            chosen = random.Random(person.user_id).sample(held_out, args.held_out)
            asks = [[{"role": "system", "content": SHORT_SYSTEM}, {"role": "user", "content": p}] for p in chosen]
            tuned = [GenerationRequest(m, soft, max_new_tokens=args.tokens, temperature=0.0)
                     for m in asks for soft in (mine, generic)]
            plain = [GenerationRequest(m, None, max_new_tokens=args.tokens, temperature=0.0) for m in asks]
            generate_batch(lm, tokenizer, tuned)
            with adapter_disabled(lm):
                generate_batch(lm, tokenizer, plain)
            texts = {"personal": ["".join(r.stream()) for r in tuned[::2]],
                     "generic": ["".join(r.stream()) for r in tuned[1::2]],
                     "base": ["".join(r.stream()) for r in plain]}
            for k, ours in enumerate(texts["personal"]):
                for other in others:
                    wins[other][person.group].append(judge_prefers(person, ours, texts[other][k]))
                for name in lengths[person.group]:
                    lengths[person.group][name].append(len(texts[name][k].split()))
    print(f"generated and judged in {time.perf_counter() - start:.0f} s\n")
    print("| group | held-out prompts | personalized preferred over generic vectors | over the base model | "
          "avg words personal / generic / base | target |")
    print("|---|---|---|---|---|---|")
    for group in sorted(lengths):
        words = lengths[group]
        vs = {o: wins[o][group] for o in others}
        print(f"| {group} | {len(vs['generic'])} | {sum(vs['generic']) / len(vs['generic']):.1%} | "
              f"{sum(vs['base']) / len(vs['base']):.1%} | {statistics.mean(words['personal']):.1f} / "
              f"{statistics.mean(words['generic']):.1f} / {statistics.mean(words['base']):.1f} | >= 70 % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
