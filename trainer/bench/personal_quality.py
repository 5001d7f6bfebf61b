"""Do personalized generations move towards each user's hidden preference?

    python -m trainer.bench.personal_quality [--model PATH] [--users 10] [--conversations 12]

A synthetic population with two opposing groups on reply length (70 % prefer
detailed replies, 30 % concise ones). P-DPO (individual user model) is trained
on their pairs with the bundled model; then, for held-out prompts, each user's
reply from their own vectors and the reply from the generic vectors are
generated (greedy, both in one batched forward pass), and the user's hidden
rule (without noise) judges them. Printed per group: the share of prompts
where the rule prefers the personalized reply (ties count as not preferred),
ties, and the average length of both replies. Sizes are small so that it
finishes on 2 CPU cores in about a quarter of an hour; they are printed.
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
from trainer.core.synthetic import DEFAULT_PROMPTS, judge_prefers, load_prompts, make_pairs, sample_population

SYSTEM = "You are a helpful assistant."


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="data/models/SmolLM2-135M-Instruct")
    ap.add_argument("--prompts", default="/work/shared/data/prism/opening_prompts.jsonl")
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--conversations", type=int, default=12, help="training pairs per user")
    ap.add_argument("--held-out", type=int, default=4, help="held-out prompts per user")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--lr-lora", type=float, default=5e-4)
    ap.add_argument("--lr-user", type=float, default=5e-3)
    args = ap.parse_args(argv)
    try:
        prompts = load_prompts(args.prompts)
    except OSError:
        prompts = DEFAULT_PROMPTS
    rng = random.Random(7)
    rng.shuffle(prompts)
    held_out, train_prompts = prompts[:max(8, args.held_out * 2)], prompts[max(8, args.held_out * 2):]
    people = sample_population(args.users, dimension="length", seed=0)
    pairs = make_pairs(people, train_prompts, conversations_per_user=args.conversations, seed=1, system=SYSTEM,
                       detailed_sentences=(2, 3))
    config = TrainConfig(batch_size=8, micro_batch_size=4, epochs=args.epochs, warmup_steps=5, lr_lora=args.lr_lora,
                         lr_user=args.lr_user, max_prompt_length=128, max_length=320, log_every=10, seed=0,
                         device="cpu")
    print(f"model {args.model}; {len(people)} users ({', '.join(sorted({p.group for p in people}))}), "
          f"{len(pairs)} training pairs, {args.epochs} epochs, batch {config.batch_size}, lr LoRA {config.lr_lora} / "
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
    wins, ties, lengths = defaultdict(list), defaultdict(int), defaultdict(lambda: {"personal": [], "generic": []})
    with torch.no_grad():
        generic = model.user_model(torch.tensor([0]))[0]
        for person in people:
            mine = model.user_model(torch.tensor([index.row(person.user_id)]))[0]
            chosen = random.Random(person.user_id).sample(held_out, args.held_out)
            requests = []
            for prompt in chosen:
                messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
                requests += [GenerationRequest(messages, mine, max_new_tokens=args.tokens, temperature=0.0),
                             GenerationRequest(messages, generic, max_new_tokens=args.tokens, temperature=0.0)]
            generate_batch(lm, tokenizer, requests)
            texts = ["".join(r.stream()) for r in requests]
            for ours, theirs in zip(texts[::2], texts[1::2]):
                wins[person.group].append(judge_prefers(person, ours, theirs))
                ties[person.group] += int(ours == theirs or not judge_prefers(person, theirs, ours)
                                          and not judge_prefers(person, ours, theirs))
                lengths[person.group]["personal"].append(len(ours.split()))
                lengths[person.group]["generic"].append(len(theirs.split()))
    print(f"generated and judged in {time.perf_counter() - start:.0f} s\n")
    print("| group | held-out prompts | personalized preferred by the hidden rule | ties | avg words personal / generic | target |")
    print("|---|---|---|---|---|---|")
    for group in sorted(wins):
        flags = wins[group]
        words = lengths[group]
        print(f"| {group} | {len(flags)} | {sum(flags) / len(flags):.1%} | {ties[group]} | "
              f"{statistics.mean(words['personal']):.1f} / {statistics.mean(words['generic']):.1f} | >= 70 % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
