"""Personalization benchmark on a real model (default: the bundled SmolLM2-135M-Instruct).

    python -m bench pair_accuracy [--model PATH]

A synthetic population with two opposing groups on reply length (70 % prefer
detailed replies, 30 % concise ones, as in the paper's TL;DR setup). Trains
P-DPO (individual user model), plain DPO and P-DPO with the cluster user model
on the same training pairs, then prints implicit-reward accuracy on held-out
pairs: seen users per group, unseen users (generic vectors), and a new user of
the minority group fitted from 5, 10 and 20 pairs with everything else frozen
(the default linearised fast fit). Sizes are small so it finishes on 2 CPU
cores in about 40 minutes (bf16 autocast: about twice as fast as fp32 on a CPU
with AVX512-BF16); they are printed with the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from bench.figures import Figure, default_model
from trainer.core.config import FastFitConfig, TrainConfig, plain_dpo
from trainer.core.data import split_pairs
from trainer.core.evaluate import evaluate
from trainer.core.fastfit import fast_fit
from trainer.core.hardware import describe_cpu, precision_for
from trainer.core.loop import train
from users.synthetic.pairs import make_pairs
from users.synthetic.personas import sample_population
from users.synthetic.prompts import PRISM_PROMPTS, SHORT_SYSTEM, prompts_or_default


def cell(d: dict | None) -> str:
    return "-" if not d or d.get("accuracy") is None else f"{d['accuracy']:6.1%} (n={d['n']})"


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a transformers folder or hub id (default: the bundled SmolLM2)")
    ap.add_argument("--prompts", default=str(PRISM_PROMPTS))
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--conversations", type=int, default=12, help="per seen user; a quarter is held out")
    ap.add_argument("--unseen-users", type=int, default=2)
    ap.add_argument("--steps", type=int, default=36, help="optimizer steps of 8 pairs per run")
    ap.add_argument("--lr-lora", type=float, default=1e-3)
    ap.add_argument("--lr-user", type=float, default=5e-2)
    ap.add_argument("--lr-mixture", type=float, default=1.0, help="cluster model's mixture logits (0 = --lr-user)")
    ap.add_argument("--lora-dropout", type=float, default=0.0)
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                    help="bf16 autocast (about 2x faster on CPUs with AVX512-BF16 or AMX, several times slower "
                         "without them) or fp32; auto picks by the CPU's flags")
    ap.add_argument("--fit-method", choices=("linear", "adam"), default="linear")
    ap.add_argument("--fit-steps", type=int, default=6, help="adam fit only")
    ap.add_argument("--fit-lr", type=float, default=5e-2, help="adam fit only")
    ap.add_argument("--runs", default="individual,plain,cluster",
                    help="comma-separated subset of individual,plain,cluster")
    ap.add_argument("--skip-cluster", action="store_true", help="same as leaving cluster out of --runs")
    ap.add_argument("--skip-fit", action="store_true", help="no new-user fast fit")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.model = args.model or default_model()
    args.precision = precision_for(args.precision)
    print(describe_cpu(), flush=True)

    prompts = prompts_or_default(args.prompts)
    short = dict(system=SHORT_SYSTEM, detailed_sentences=(2, 2))
    people = sample_population(args.users, dimension="length", majority_pole="detailed", majority_share=0.7,
                               seed=args.seed)
    pairs = make_pairs(people, prompts, conversations_per_user=args.conversations, seed=args.seed + 1, **short)
    split = split_pairs(pairs, unseen_fraction=0.0, test_fraction=0.25, seed=args.seed)
    strangers = sample_population(args.unseen_users, majority_share=0.5, seed=args.seed + 7, prefix="stranger")
    unseen = make_pairs(strangers, prompts, conversations_per_user=2, seed=args.seed + 2, **short)
    newcomer = sample_population(1, majority_pole="concise", majority_share=1.0, seed=0, prefix="newcomer")
    new_pairs = make_pairs(newcomer, prompts, conversations_per_user=26, seed=args.seed + 3, **short)
    fit_pool, new_test = new_pairs[:20], new_pairs[20:]

    config = TrainConfig(batch_size=8, micro_batch_size=4, epochs=args.steps * 8 / len(split.train),
                         lr_lora=args.lr_lora, lr_user=args.lr_user, lora_dropout=args.lora_dropout,
                         warmup_steps=0, log_every=1, seed=args.seed, bf16=args.precision == "bf16")
    print(f"model {args.model}; {args.users} seen users (7:3 detailed:concise), {len(split.train)} train pairs, "
          f"{len(split.test_seen)} held-out seen pairs, {len(unseen)} unseen-user pairs, newcomer 5/10/20 fit pairs "
          f"+ {len(new_test)} test; {args.steps} steps of {config.batch_size} pairs ({config.epochs:.1f} epochs), "
          f"lr LoRA {config.lr_lora} / user {config.lr_user}, LoRA dropout {config.lora_dropout}, "
          f"T_u {config.n_user_tokens}, beta {config.beta}, alpha {config.alpha}, {args.precision}", flush=True)

    wanted = set(args.runs.split(",")) - ({"cluster"} if args.skip_cluster else set())
    every = {"individual": ("P-DPO (individual)", config), "plain": ("plain DPO", plain_dpo(config)),
             "cluster": ("P-DPO (cluster K=10)", dataclasses.replace(config, user_model="cluster",
                                                                     lr_mixture=args.lr_mixture))}
    runs = dict(every[k] for k in ("individual", "plain", "cluster") if k in wanted)
    rows, trained = [], {}
    for name, cfg in runs.items():
        start = time.perf_counter()
        result = train(cfg, args.model, split.train,
                       progress=lambda s, t, m: m and print(
                           f"  [{name}] step {s}/{t} loss {m['loss']:.3f} acc {m['rewards/accuracies']:.2f} "
                           f"({time.perf_counter() - start:.0f} s)", flush=True))
        seconds = time.perf_counter() - start
        seen = evaluate(result.model, result.tokenizer, result.user_index, cfg, split.test_seen)
        stranger = evaluate(result.model, result.tokenizer, result.user_index, cfg, unseen)
        rows.append((name, seen, stranger, seconds, len(split.train) * cfg.epochs / seconds))
        trained[name] = (result, cfg)

    fits = []
    generic_for_newcomer = None
    if "P-DPO (individual)" not in trained or args.skip_fit:
        fit_sizes = ()
    else:
        fit_sizes = (5, 10, 20)
        result, cfg = trained["P-DPO (individual)"]
        generic_for_newcomer = evaluate(result.model, result.tokenizer, result.user_index, cfg, new_test)
    for n in fit_sizes:
        report = fast_fit(result.model, result.tokenizer, result.user_index, cfg, f"newcomer1-{n}",
                          [dataclasses.replace(p, user_id=f"newcomer1-{n}") for p in fit_pool[:n]],
                          fit=FastFitConfig(method=args.fit_method, steps=args.fit_steps, lr=args.fit_lr))
        test = [dataclasses.replace(p, user_id=f"newcomer1-{n}") for p in new_test]
        fits.append((n, evaluate(result.model, result.tokenizer, result.user_index, cfg, test), report))

    groups = ["length:detailed", "length:concise"]
    print("\n| model | seen: detailed (70 %) | seen: concise (30 %) | seen: all | unseen users (generic) | "
          "train s | pairs/s |")
    print("|---|---|---|---|---|---|---|")
    for name, seen, stranger, seconds, rate in rows:
        print(f"| {name} | {cell(seen.groups.get(groups[0]))} | {cell(seen.groups.get(groups[1]))} | "
              f"{cell(seen.seen)} | {cell(stranger.unseen)} | {seconds:.0f} | {rate:.2f} |")
    figures = []
    for name, seen, _stranger, _seconds, _rate in rows:
        for group in groups:
            acc = (seen.groups.get(group) or {}).get("accuracy")
            personal = name.startswith("P-DPO")
            figures.append(Figure("pair_accuracy", f"{name}, held-out accuracy, {group}",
                                  cell(seen.groups.get(group)).strip(), ">= 90 %" if personal else "",
                                  (acc is not None and acc >= 0.9) if personal else None))
    if generic_for_newcomer is None:
        return figures
    print("\n| new concise-preferring user | held-out accuracy | fit seconds | model passes | "
          "loss before -> after |")
    print("|---|---|---|---|---|")
    print(f"| generic vectors (0 pairs) | {cell({'accuracy': generic_for_newcomer.accuracy, 'n': len(new_test)})} "
          f"| 0 | 0 | - |")
    for n, res, rep in fits:
        print(f"| fast fit, {n} pairs | {cell({'accuracy': res.accuracy, 'n': res.n})} | {rep.seconds:.1f} | "
              f"{rep.passes} | {rep.losses[0]:.3f} -> {rep.losses[-1]:.3f} |")
        figures.append(Figure("pair_accuracy", f"newcomer fast-fitted from {n} pairs, held-out accuracy",
                              f"{cell({'accuracy': res.accuracy, 'n': res.n}).strip()} in {rep.seconds:.0f} s",
                              ">= 90 %", res.accuracy >= 0.9))
    return figures
