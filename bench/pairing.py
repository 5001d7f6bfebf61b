"""Which pairs to train on: the pairing strategies side by side on one simulated population.

    python -m bench pairing [--model PATH] [--seeds 0,1] [--out DIR]

Each simulated person (two opposing groups on reply length, 70 % and 30 %) rates four candidate replies of
every conversation 1-100 by their hidden rule plus noise, as PRISM's participants rate theirs; the best rated
is chosen. A quarter of all conversations is held out. P-DPO is trained on the rest with the same settings
and epochs under each pairing strategy (``trainer.core.pairing``): best versus rest, all ordered pairs, best
versus rest weighted by margin; and once more on best versus rest for as many steps as all ordered pairs
take, since more pairs at the same epochs are also more steps. Each is judged on the same held-out conversations:
implicit-reward accuracy on all their ordered pairs (every preference the ratings express) and on their best
versus rest pairs, per group, with a 95 % interval.

Each finished (strategy, seed) is kept in ``--out`` and skipped when the benchmark runs again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time

from bench.figures import Figure, prepared
from trainer.core.config import TrainConfig
from trainer.core.data import Pair
from trainer.core.winrate import wilson
from trainer.core.evaluate import evaluate
from trainer.core.hardware import describe_cpu
from trainer.core.loop import train
from trainer.core.pairing import STRATEGIES, margin_weights, turn_pairs
from users.synthetic.personas import sample_population
from users.synthetic.prompts import PRISM_PROMPTS, SHORT_SYSTEM, prompts_or_default
from users.synthetic.replies import contrasting_styles, generate_reply
from users.synthetic.rule import score

GROUPS = ("length:detailed", "length:concise")


def rated_turns(people, prompts: list[str], conversations: int, seed: int) -> list[dict]:
    """Every (person, conversation): its prompt and four candidates with the person's scores, the best chosen."""
    rng = random.Random(seed)
    turns = []
    for persona in people:
        for c in range(conversations):
            prompt = rng.choice(prompts)
            texts = [generate_reply(prompt, style, rng, detailed_sentences=(2, 3))
                     for style in contrasting_styles(rng, "length", 4)]
            scores = [score(persona, text, rng) for text in texts]
            best = scores.index(max(scores))
            turns.append({"persona": persona, "conversation": f"{persona.user_id}-c{c}", "prompt": prompt,
                          "candidates": [(text, s, i == best) for i, (text, s) in enumerate(zip(texts, scores))]})
    return turns


def pairs_of(turns: list[dict], strategy: str) -> list[Pair]:
    pairs = []
    for turn in turns:
        scores = {text: s for text, s, _ in turn["candidates"]}
        for chosen, rejected in turn_pairs(turn["candidates"], strategy):
            pairs.append(Pair(user_id=turn["persona"].user_id, conversation_id=turn["conversation"],
                              prompt=[{"role": "system", "content": SHORT_SYSTEM},
                                      {"role": "user", "content": turn["prompt"]}],
                              chosen=[{"role": "assistant", "content": chosen}],
                              rejected=[{"role": "assistant", "content": rejected}],
                              score_chosen=scores[chosen], score_rejected=scores[rejected],
                              extra={"group": turn["persona"].group}))
    if strategy == "weighted":
        weights = margin_weights([p.score_chosen - p.score_rejected for p in pairs])
        pairs = [dataclasses.replace(p, weight=w) for p, w in zip(pairs, weights)]
    return pairs


def cell(d: dict | None) -> str:
    if not d or not d.get("n"):
        return "-"
    low, high = wilson(d["accuracy"], d["n"])
    return f"{d['accuracy']:.1%} [{low:.0%}, {high:.0%}] (n={d['n']})"


EQUAL_STEPS = "best versus rest, as many steps as all ordered pairs"  # the control for all pairs' extra steps


def run_one(strategy: str, seed: int, args, model: str) -> dict:
    """Train and judge one strategy (or EQUAL_STEPS: best versus rest, its epochs scaled so that it takes as
    many optimizer steps as all ordered pairs do)."""
    people = sample_population(args.people, dimension="length", majority_pole="detailed", majority_share=0.7,
                               seed=seed)
    turns = rated_turns(people, prompts_or_default(args.prompts), args.conversations, seed + 1)
    held_out = {t["conversation"] for t in random.Random(seed + 2).sample(turns, round(len(turns) * 0.25))}
    kept = [t for t in turns if t["conversation"] not in held_out]
    training = pairs_of(kept, "best" if strategy == EQUAL_STEPS else strategy)
    epochs = args.epochs * (len(pairs_of(kept, "all")) / len(training) if strategy == EQUAL_STEPS else 1.0)
    test_turns = [t for t in turns if t["conversation"] in held_out]
    config = TrainConfig(batch_size=8, micro_batch_size=4, epochs=epochs, lr_lora=1e-3, lr_user=5e-2,
                         warmup_steps=0, log_every=1000, max_prompt_length=96, max_length=256, seed=seed,
                         bf16=args.precision == "bf16")
    started = time.perf_counter()
    result = train(config, model, training, log=lambda *_: None,
                   progress=lambda s, t, m: print(f"  [{strategy}, seed {seed}] step {s}/{t} "
                                                  f"({time.perf_counter() - started:.0f} s)", flush=True)
                   if s % 10 == 0 or s == t else None)
    seconds = time.perf_counter() - started
    scores = {}
    for judged_on in ("all", "best"):
        found = evaluate(result.model, result.tokenizer, result.user_index, config, pairs_of(test_turns, judged_on))
        scores[judged_on] = {"all people": {"accuracy": found.accuracy, "n": found.n},
                             **{g: found.groups.get(g) for g in GROUPS}}
    return {"strategy": strategy, "seed": seed, "train_pairs": len(training), "steps": result.total_steps,
            "seconds": seconds, "held_out": scores}


def pooled(results: list[dict], judged_on: str, group: str) -> dict | None:
    cells = [r["held_out"][judged_on].get(group) for r in results]
    cells = [c for c in cells if c and c.get("n")]
    if not cells:
        return None
    n = sum(c["n"] for c in cells)
    return {"accuracy": sum(c["accuracy"] * c["n"] for c in cells) / n, "n": n}


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a transformers folder (default: the bundled SmolLM2)")
    ap.add_argument("--prompts", default=str(PRISM_PROMPTS))
    ap.add_argument("--people", type=int, default=10)
    ap.add_argument("--conversations", type=int, default=8, help="per person; a quarter of all is held out")
    ap.add_argument("--epochs", type=float, default=2.0, help="the same for every strategy")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    ap.add_argument("--out", default="bench-results/pairing", help="each finished (strategy, seed) is kept here")
    args = ap.parse_args(argv)
    model, out = prepared(args)
    print(f"{describe_cpu()}; model {model}; {args.people} people (7:3 detailed:concise) x {args.conversations} "
          f"conversations of four rated candidates, a quarter held out; P-DPO, {args.epochs:g} epochs of batches "
          f"of 8; {args.precision}", flush=True)
    names = {**STRATEGIES, EQUAL_STEPS: EQUAL_STEPS}
    results = {name: [] for name in names}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for strategy in names:
            path = out / f"{'best-equal-steps' if strategy == EQUAL_STEPS else strategy}-seed{seed}.json"
            if not path.exists():
                found = run_one(strategy, seed, args, model)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(found))
                tmp.replace(path)  # a stop mid-write leaves no half-result
            results[strategy].append(json.loads(path.read_text()))
    print("\n| pairing | training pairs | steps | held-out, all ordered pairs: all people | detailed (70 %) | "
          "concise (30 %) | held-out, best versus rest: all people | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for strategy, rows in results.items():
        print(f"| {names[strategy]} | {sum(r['train_pairs'] for r in rows)} | {sum(r['steps'] for r in rows)} | "
              f"{cell(pooled(rows, 'all', 'all people'))} | {cell(pooled(rows, 'all', GROUPS[0]))} | "
              f"{cell(pooled(rows, 'all', GROUPS[1]))} | {cell(pooled(rows, 'best', 'all people'))} | "
              f"{sum(r['seconds'] for r in rows):.0f} |")
    return [Figure("pairing", f"{names[s]}: held-out accuracy on all ordered pairs, {group}",
                   cell(pooled(rows, "all", group))) for s, rows in results.items() for group in GROUPS]


if __name__ == "__main__":
    main()
