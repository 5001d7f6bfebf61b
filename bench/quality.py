"""Do personalized generations move towards each user's hidden preference?

    python -m bench quality [--model PATH] [--users 10] [--conversations 12]

A synthetic population with two opposing groups on reply length (70 % prefer
detailed replies, 30 % concise ones). P-DPO (individual user model) is trained
on their pairs with the bundled model (the settings of
``python -m bench personalization``); then, for held-out prompts, each user's
reply from their own vectors, the reply from the generic vectors and the base
model's reply (adapter off, no soft prompt) are generated in batched forward
passes, sampled as the chat samples (temperature 0.7, top-p 0.9; the same seed
for the three replies to one prompt; ``--temperature 0`` for greedy), and the
user's hidden rule (without noise) judges them. ``--candidates sampled``
trains on the PRISM-like setting instead of templates: the base model writes
``--samples`` replies to each training prompt, and each user rates them all
1-100, best against worst. ``--alpha`` weighs the personal term against the
generic one; ``--device cuda`` runs it all on a GPU (bf16 autocast training);
``--seeds N`` trains N times and pools the judgements (one run is noisy).
Printed per group: the share of prompts where the rule prefers the
personalized reply over each of the other two (ties count as not preferred),
and the average length of the three replies; the same comparison under the
earlier length calibration (``LENGTH_WORDS_V1``, saturating at 120 words) is
printed beside it. Sizes are small so that it finishes on 2 CPU cores in under
an hour; they are printed. ``--run-dir`` keeps the trained run (and writes the
replies to replies.json there): a second call with the same folder only
generates and judges.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from bench.figures import Figure, default_model
from trainer.core.artifacts import load_run, save_run
from trainer.core.batch_generation import GenerationRequest, generate_batch
from trainer.core.config import TrainConfig
from trainer.core.loop import describe_device, load_base, pick_device, precision_for, train
from trainer.core.reference import adapter_disabled
from users.synthetic.pairs import make_pairs, make_rated_pairs
from users.synthetic.personas import sample_population
from users.synthetic.prompts import PRISM_PROMPTS, SHORT_SYSTEM, prompts_or_default
from users.synthetic.rule import DIMENSIONS, LENGTH_WORDS_V1, judge_prefers, style_instruction


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a transformers folder or hub id (default: the bundled SmolLM2)")
    ap.add_argument("--prompts", default=str(PRISM_PROMPTS))
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--conversations", type=int, default=12, help="training pairs per user")
    ap.add_argument("--held-out", type=int, default=4, help="held-out prompts per user")
    ap.add_argument("--steps", type=int, default=36, help="optimizer steps of 8 pairs")
    ap.add_argument("--tokens", type=int, default=96, help="new tokens per held-out reply (and per model-written "
                    "candidate)")
    ap.add_argument("--temperature", type=float, default=0.7, help="sampling for the held-out replies (0 = greedy); "
                    "the default is the chat's (CHAT_TEMPERATURE)")
    ap.add_argument("--top-p", type=float, default=0.9)
    ap.add_argument("--generation-batch", type=int, default=16, help="held-out replies per forward pass")
    ap.add_argument("--detailed-sentences", type=int, nargs=2, default=(2, 3), metavar=("MIN", "MAX"),
                    help="body sentences of a detailed template candidate")
    ap.add_argument("--lr-lora", type=float, default=1e-3)
    ap.add_argument("--lr-user", type=float, default=5e-2)
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                    help="auto: bf16 autocast on a GPU and where the CPU computes bf16 natively, else fp32")
    ap.add_argument("--candidates", choices=("template", "model", "sampled"), default="template",
                    help="training candidates: the template generator; the base model itself told to be concise "
                         "or detailed (greedy); or --samples replies the base model wrote with the chat's sampling, "
                         "which each user rates 1-100, best against worst, as in collection (model-written ones "
                         "are --tokens long and cached in --run-dir)")
    ap.add_argument("--samples", type=int, default=4, help="sampled candidates per training prompt")
    ap.add_argument("--candidates-cache", type=Path, help="where model-written candidates are kept "
                    "(default: candidates.json in --run-dir), to share them between runs")
    ap.add_argument("--alpha", type=float, default=TrainConfig.alpha,
                    help="weight of the personal term (the rest trains the generic vectors)")
    ap.add_argument("--device", default="auto", help="auto (a GPU where there is one), cpu or cuda")
    ap.add_argument("--max-length", type=int, help="training sequence length (prompt, soft prompt and reply; longer "
                    "replies are cut at the end); default 160 + --tokens")
    ap.add_argument("--run-dir", type=Path, help="save the trained run here; if it already holds one, reuse it")
    ap.add_argument("--seeds", type=int, default=1, help="train this many times (training seeds 0, 1, ...; each "
                    "with its own sampling seeds) and pool the judgements; the spread across seeds is printed")
    args = ap.parse_args(argv)
    args.model = args.model or default_model()
    args.device = str(pick_device(TrainConfig(device=args.device)))
    args.precision = precision_for(args.precision, args.device)
    print(describe_device(args.device), flush=True)
    prompts = prompts_or_default(args.prompts)
    rng = random.Random(7)
    rng.shuffle(prompts)
    held_out, train_prompts = prompts[:max(8, args.held_out * 2)], prompts[max(8, args.held_out * 2):]
    people = sample_population(args.users, dimension="length", seed=0)
    if args.candidates == "sampled":
        pairs = make_rated_pairs(people, model_candidates(args, train_prompts),
                                 conversations_per_user=args.conversations, seed=1, system=SHORT_SYSTEM)
    else:
        writer = None
        if args.candidates == "model":
            written = model_candidates(args, train_prompts)
            writer = lambda prompt, style, rng: written[style["length"]][prompt]  # noqa: E731
        pairs = make_pairs(people, train_prompts, conversations_per_user=args.conversations, seed=1,
                           system=SHORT_SYSTEM, detailed_sentences=tuple(args.detailed_sentences), writer=writer)
    config = TrainConfig(batch_size=8, micro_batch_size=4, epochs=args.steps * 8 / len(pairs), warmup_steps=0,
                         lr_lora=args.lr_lora, lr_user=args.lr_user, lora_dropout=0.0, max_prompt_length=128,
                         max_length=args.max_length or 160 + args.tokens, log_every=10, seed=0, device=args.device,
                         bf16=args.precision == "bf16", alpha=args.alpha)
    print(f"model {args.model}; {len(people)} users ({', '.join(sorted({p.group for p in people}))}), "
          f"{len(pairs)} training pairs ({args.candidates} candidates), {args.steps} steps of {config.batch_size}, "
          f"max length {config.max_length}, {args.precision}, "
          f"lr LoRA {config.lr_lora} / user {config.lr_user}, alpha {config.alpha}; "
          f"{args.held_out} held-out prompts per user, {args.tokens} new tokens, "
          + (f"sampled at temperature {args.temperature}, top-p {args.top_p}" if args.temperature > 0 else "greedy"),
          flush=True)
    for group in sorted({p.extra["group"] for p in pairs}):
        mine = [p for p in pairs if p.extra["group"] == group]
        print(f"training pairs of {group}: {len(mine)}, chosen "
              f"{statistics.mean(len(p.chosen[0]['content'].split()) for p in mine):.0f} words on average, rejected "
              f"{statistics.mean(len(p.rejected[0]['content'].split()) for p in mine):.0f}", flush=True)
    runs = []
    for seed in range(args.seeds):
        run_dir = args.run_dir / f"seed{seed}" if args.run_dir and args.seeds > 1 else args.run_dir
        if args.seeds > 1:
            print(f"training seed {seed} of {args.seeds}", flush=True)
        runs.append(trained_replies(args, dataclasses.replace(config, seed=seed), pairs, people, held_out, run_dir))
    return report(people, runs)


def trained_replies(args, config: TrainConfig, pairs, people, held_out: list[str], run_dir: Path | None) -> dict:
    """Train (or reuse the run in ``run_dir``) with ``config.seed`` and generate the held-out replies."""
    if run_dir and (run_dir / "run.json").exists():
        run = load_run(run_dir, device=args.device)
        print(f"reusing the run in {run_dir} (its own training settings are in config.json there)", flush=True)
        model, tokenizer, index = run.model, run.tokenizer, run.user_index
    else:
        model, tokenizer, index = train_population(args, config, pairs, run_dir)
    model.eval()
    texts, elapsed = held_out_replies(args, model, tokenizer, index, people, held_out,
                                      first_seed=1000 + 1000 * config.seed)
    print(f"generated {sum(len(t) for t in texts.values())} replies in {elapsed:.0f} s\n", flush=True)
    if run_dir:
        saved = {kind: [{"key": list(k) if isinstance(k, tuple) else k, "text": t} for k, t in replies.items()]
                 for kind, replies in texts.items()}
        (run_dir / "replies.json").write_text(json.dumps(saved, indent=1))
    return texts


def held_out_replies(args, model, tokenizer, index, people, held_out: list[str], *,
                     first_seed: int = 1000) -> tuple[dict, float]:
    """Each user's own replies to their held-out prompts, and the generic and base replies to each prompt drawn.

    The generic vectors and the base model do not depend on who asks, so their
    reply to a prompt is generated once and judged by every user who drew it;
    every reply to one prompt uses the same sampling seed. Returns
    ``{"personal": {(user, prompt): text}, "generic": {prompt: text}, "base": {prompt: text}}``.
    """
    lm = model.lm
    sampling = {"max_new_tokens": args.tokens, "temperature": args.temperature, "top_p": args.top_p}
    seeds = {p: first_seed + i for i, p in enumerate(held_out)}
    asks = {p: [{"role": "system", "content": SHORT_SYSTEM}, {"role": "user", "content": p}] for p in held_out}
    drawn = {person.user_id: random.Random(person.user_id).sample(held_out, args.held_out) for person in people}
    wanted = set().union(*drawn.values())
    asked = [p for p in held_out if p in wanted]
    start = time.perf_counter()
    device = next(model.parameters()).device
    with torch.no_grad():
        generic = model.user_model(torch.tensor([0], device=device))[0]
        jobs = {("generic", p): GenerationRequest(asks[p], generic, seed=seeds[p], **sampling) for p in asked}
        for person in people:
            mine = model.user_model(torch.tensor([index.row(person.user_id)], device=device))[0]
            for p in drawn[person.user_id]:
                jobs["personal", (person.user_id, p)] = GenerationRequest(asks[p], mine, seed=seeds[p], **sampling)
        generate_in_batches(lm, tokenizer, list(jobs.values()), args.generation_batch,
                            "personalized and generic replies")
        plain = {p: GenerationRequest(asks[p], None, seed=seeds[p], **sampling) for p in asked}
        with adapter_disabled(lm):
            generate_in_batches(lm, tokenizer, list(plain.values()), args.generation_batch, "base-model replies")
    texts = {"personal": {}, "generic": {}, "base": {p: "".join(r.stream()) for p, r in plain.items()}}
    for (kind, key), r in jobs.items():
        texts[kind][key] = "".join(r.stream())
    return texts, time.perf_counter() - start


def generate_in_batches(lm, tokenizer, requests: list[GenerationRequest], size: int, what: str) -> None:
    """``generate_batch`` over ``size`` requests at a time, printing progress after each batch."""
    start = time.perf_counter()
    for i in range(0, len(requests), size):
        generate_batch(lm, tokenizer, requests[i:i + size])
        print(f"  {min(i + size, len(requests))}/{len(requests)} {what}, {time.perf_counter() - start:.0f} s",
              flush=True)


def report(people, runs: list[dict]) -> list[Figure]:
    """Per group: how often the user's hidden rule prefers their reply over the generic and the base one,
    pooled over the training seeds' ``runs``; with several, each seed's share over the generic vectors too."""
    others = ("generic", "base")
    rules = {"": {}, " (120-word rule)": {"length_words": LENGTH_WORDS_V1}}
    wins = {(o, rule): defaultdict(lambda: [[] for _ in runs]) for o in others for rule in rules}  # group -> seed
    lengths = defaultdict(lambda: {"personal": [], "generic": [], "base": []})
    by_id = {p.user_id: p for p in people}
    for seed, texts in enumerate(runs):
        for (user_id, prompt), ours in texts["personal"].items():
            person = by_id[user_id]
            for other in others:
                for rule, scale in rules.items():
                    wins[other, rule][person.group][seed].append(
                        judge_prefers(person, ours, texts[other][prompt], **scale))
            for name, text in (("personal", ours), ("generic", texts["generic"][prompt]),
                               ("base", texts["base"][prompt])):
                lengths[person.group][name].append(len(text.split()))
    header = [f"personalized preferred over {o}{rule}" for rule in rules for o in ("generic vectors", "base model")]
    print("| group | held-out prompts | " + " | ".join(header) + " | avg words personal / generic / base | target |")
    print("|---" * (len(header) + 4) + "|")
    figures = []
    for group in sorted(lengths):
        words = lengths[group]
        shares = [sum(wins[o, rule][group], []) for rule in rules for o in others]
        print(f"| {group} | {len(shares[0])} | " + " | ".join(f"{sum(s) / len(s):.1%}" for s in shares)
              + f" | {statistics.mean(words['personal']):.1f} / {statistics.mean(words['generic']):.1f} / "
              f"{statistics.mean(words['base']):.1f} | >= 70 % over generic |")
        figures += [Figure("quality", f"{group}: own vectors preferred over {o} ({len(share)} prompts)",
                           f"{sum(share) / len(share):.1%}") for o, share in zip(("generic vectors", "base model"),
                                                                              shares)]
    if len(runs) > 1:
        print()
        for group in sorted(lengths):
            print(f"{group}, preferred over the generic vectors per training seed: "
                  + ", ".join(f"{sum(s) / len(s):.1%}" for s in wins["generic", ""][group] if s))
    return figures


def model_candidates(args, prompts: list[str]) -> dict:
    """Training candidates the base model writes, cached.

    ``--candidates model``: pole -> prompt -> the greedy reply when told to
    write at that pole of the length dimension. ``--candidates sampled``:
    prompt -> ``--samples`` replies sampled with the chat's settings and no
    style instruction (each with its own seed).
    """
    cache = args.candidates_cache or (args.run_dir / "candidates.json" if args.run_dir else None)
    settings = {"kind": args.candidates, "model": args.model, "tokens": args.tokens}
    if args.candidates == "sampled":
        settings.update(temperature=args.temperature, top_p=args.top_p)
    if cache and cache.exists():
        kept = json.loads(cache.read_text())
        if kept.get("settings") != settings:
            raise SystemExit(f"{cache} holds candidates written with {kept.get('settings')}, not {settings}; "
                             "delete it or name another --candidates-cache")
        written = kept["candidates"]
    else:
        lm, tokenizer = load_base(args.model)
        lm.to(args.device).eval()
        write = sampled_candidates if args.candidates == "sampled" else instructed_candidates
        written = write(args, lm, tokenizer, prompts)
        if cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"settings": settings, "candidates": written}, indent=1))
    if args.candidates != "sampled":
        return written
    if not all(len(written.get(p, [])) >= args.samples for p in prompts):
        raise SystemExit(f"{cache} does not hold {args.samples} sampled candidates for every training prompt; "
                         "delete it or name another --candidates-cache")
    return {p: written[p][:args.samples] for p in prompts}


def sampled_candidates(args, lm, tokenizer, prompts: list[str]) -> dict[str, list[str]]:
    requests = {(p, k): GenerationRequest([{"role": "system", "content": SHORT_SYSTEM}, {"role": "user", "content": p}],
                                          None, max_new_tokens=args.tokens, temperature=args.temperature,
                                          top_p=args.top_p, seed=100_000 + 100 * i + k)
                for i, p in enumerate(prompts) for k in range(args.samples)}
    with torch.no_grad():
        generate_in_batches(lm, tokenizer, list(requests.values()), args.generation_batch, "sampled candidates")
    written = {p: ["".join(requests[p, k].stream()).strip() or "..." for k in range(args.samples)] for p in prompts}
    words = [len(t.split()) for replies in written.values() for t in replies]
    print(f"  {len(words)} sampled candidates, {statistics.mean(words):.0f} words on average "
          f"(median {statistics.median(words):.0f}, {min(words)} to {max(words)})", flush=True)
    return written


def instructed_candidates(args, lm, tokenizer, prompts: list[str]) -> dict[str, dict[str, str]]:
    start = time.perf_counter()
    written = {}
    for pole in DIMENSIONS["length"].poles:
        system = f"{SHORT_SYSTEM} {style_instruction('length', pole)}"
        requests = [GenerationRequest([{"role": "system", "content": system}, {"role": "user", "content": p}],
                    None, max_new_tokens=args.tokens, temperature=0.0) for p in prompts]
        generate_in_batches(lm, tokenizer, requests, args.generation_batch, f"{pole} candidates")
        written[pole] = {p: "".join(r.stream()).strip() or "..." for p, r in zip(prompts, requests)}
        words = statistics.mean(len(t.split()) for t in written[pole].values())
        print(f"  {len(prompts)} {pole} candidates written by the base model, {words:.0f} words on average, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    return written


def train_population(args, config: TrainConfig, pairs, run_dir: Path | None):
    start = time.perf_counter()

    def progress(step: int, total: int, metrics: dict | None) -> None:
        if step % 5 == 0 or step == total:
            print(f"  step {step}/{total}, {time.perf_counter() - start:.0f} s", flush=True)

    result = train(config, args.model, pairs, progress=progress, log=lambda msg: print("  ", msg, flush=True))
    print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
    if run_dir:
        save_run(run_dir, result.model, result.user_index, config, base_model=args.model)
    return result.model, result.tokenizer, result.user_index
