"""Careless raters among careful ones: do the raters page's flags find them, and does leaving them out help?

    python -m bench raters [--model PATH] [--flag-seeds 50] [--seeds 0,1,2] [--out DIR]

Careful simulated people (two opposing groups on reply length, 70 % and 30 %) rate four candidates of each
conversation by their hidden rule plus noise; careless ones rate the same kind of conversations with one score
for everything, at random, or at random and faster than anyone reads. First, over ``--flag-seeds``
populations (no model needed), how many careless people the flags (``users.raters``) find and how many careful
ones they flag. Then, on one population per seed, P-DPO trained twice with the same settings and the same
number of optimizer steps: on everyone's pairs, and without the flagged people's (so the only difference is the
data); both judged on the careful people's held-out conversations (a quarter of each), per group, with a 95 %
interval, per seed and pooled over the seeds.

Each finished (arm, seed) is kept in ``--out`` and skipped when the benchmark runs again.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from bench.figures import Figure, prepared
from bench.pairing import GROUPS, cell, pairs_of, pooled, rated_turns
from trainer.core.config import TrainConfig
from trainer.core.evaluate import evaluate
from trainer.core.hardware import describe_cpu
from trainer.core.loop import train
from users.raters import RatedTurn, rater_quality
from users.synthetic.personas import sample_population
from users.synthetic.prompts import PRISM_PROMPTS, prompts_or_default
from users.synthetic.rule import Persona

CARELESS = ("one score", "random", "random, fast")
READING_WORDS_PER_SECOND = 4.0


def population(careful: int, careless: int, conversations: int, prompts: list[str], seed: int) -> list[dict]:
    """Every rated turn of ``careful`` people by their rule and of ``careless`` ones by one of CARELESS in turn,
    each with the seconds its ratings took."""
    people = sample_population(careful, dimension="length", majority_pole="detailed", majority_share=0.7, seed=seed)
    sloppy = [Persona(f"careless{i}-{CARELESS[i % len(CARELESS)].replace(', ', '-').replace(' ', '-')}",
                      "careless", {}, 0.0) for i in range(careless)]
    turns = rated_turns(people + sloppy, prompts, conversations, seed + 1)
    rng = random.Random(seed + 2)
    for turn in turns:
        words = sum(len(text.split()) for text, _, _ in turn["candidates"])
        turn["seconds"] = words / READING_WORDS_PER_SECOND
        kind = turn["persona"].user_id.split("-", 1)[1] if turn["persona"].group == "careless" else None
        if kind is None:
            continue
        scores = [50] * 4 if kind == "one-score" else [rng.randint(1, 100) for _ in range(4)]
        best = scores.index(max(scores))
        turn["candidates"] = [(text, s, i == best) for i, ((text, _, _), s) in enumerate(zip(turn["candidates"],
                                                                                           scores))]
        if kind == "random-fast":
            turn["seconds"] = 2.0
    return turns


def flagged(turns: list[dict]) -> set[str]:
    people: dict[str, tuple[str | None, list[RatedTurn]]] = {}
    for turn in turns:
        persona = turn["persona"]
        _, rated = people.setdefault(persona.user_id, (None if persona.group == "careless" else persona.group, []))
        rated.append(RatedTurn([t for t, _, _ in turn["candidates"]], [s for _, s, _ in turn["candidates"]],
                               turn["seconds"]))
    return {row.person for row in rater_quality(people) if row.flags}


def train_and_judge(turns: list[dict], held_out: set[str], leave_out: set[str], args, model: str, seed: int,
                    steps: int = 0) -> dict:
    """Train on the turns outside ``held_out`` less ``leave_out``'s people (``steps`` optimizer steps, or
    ``--epochs`` when 0) and judge on the careful people's held-out turns."""
    training = pairs_of([t for t in turns if t["conversation"] not in held_out
                         and t["persona"].user_id not in leave_out], "best")
    test = pairs_of([t for t in turns if t["conversation"] in held_out and t["persona"].group != "careless"],
                    "best")
    config = TrainConfig(batch_size=8, micro_batch_size=4, epochs=args.epochs, lr_lora=1e-3, lr_user=5e-2,
                         warmup_steps=0, log_every=1000, max_prompt_length=96, max_length=256, seed=seed, max_steps=steps,
                         bf16=args.precision == "bf16")
    started = time.perf_counter()
    result = train(config, model, training, log=lambda *_: None,
                   progress=lambda s, t, m: print(f"  step {s}/{t} ({time.perf_counter() - started:.0f} s)",
                                                  flush=True) if s % 10 == 0 or s == t else None)
    found = evaluate(result.model, result.tokenizer, result.user_index, config, test)
    return {"train_pairs": len(training), "steps": result.total_steps, "seconds": time.perf_counter() - started,
            "held_out": {"all": {"all people": {"accuracy": found.accuracy, "n": found.n},
                                 **{g: found.groups.get(g) for g in GROUPS}}}}


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a transformers folder (default: the bundled SmolLM2)")
    ap.add_argument("--prompts", default=str(PRISM_PROMPTS))
    ap.add_argument("--careful", type=int, default=10)
    ap.add_argument("--careless", type=int, default=4)
    ap.add_argument("--conversations", type=int, default=8, help="per person; a quarter is held out")
    ap.add_argument("--flag-seeds", type=int, default=50, help="populations the flags are counted on")
    ap.add_argument("--epochs", type=float, default=1.5)
    ap.add_argument("--seeds", default="0,1,2", help="populations (and pair orders) trained on, one pair of runs each")
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    ap.add_argument("--skip-training", action="store_true", help="the flags' counts only")
    ap.add_argument("--out", default="bench-results/raters", help="each finished training is kept here")
    args = ap.parse_args(argv)
    prompts = prompts_or_default(args.prompts)
    careless_total = careful_total = found = wrongly = 0
    for seed in range(args.flag_seeds):
        turns = population(args.careful, args.careless, args.conversations, prompts, seed)
        hits = flagged(turns)
        found += sum(1 for p in hits if p.startswith("careless"))
        wrongly += sum(1 for p in hits if not p.startswith("careless"))
        careless_total += args.careless
        careful_total += args.careful
    print(f"{args.careful} careful and {args.careless} careless people ({' / '.join(CARELESS)} in turn) x "
          f"{args.conversations} conversations of four rated candidates, {args.flag_seeds} populations:\n"
          f"  careless people flagged: {found} of {careless_total}; careful people flagged: {wrongly} of "
          f"{careful_total}", flush=True)
    figures = [Figure("raters", "careless raters flagged", f"{found} of {careless_total}", "all",
                      found == careless_total),
               Figure("raters", "careful raters flagged", f"{wrongly} of {careful_total}", "0", wrongly == 0)]
    if args.skip_training:
        return figures

    model, out = prepared(args)
    print(f"{describe_cpu()}; model {model}; P-DPO, {args.epochs:g} epochs of batches of 8 on everyone's pairs, "
          f"as many steps without the flagged; {args.precision}", flush=True)
    arms = ("everyone", "without the flagged")
    rows: dict[str, list[dict]] = {arm: [] for arm in arms}
    for seed in [int(s) for s in args.seeds.split(",")]:
        turns = population(args.careful, args.careless, args.conversations, prompts, seed)
        hits = flagged(turns)
        held_out = {t["conversation"] for t in random.Random(seed + 3).sample(turns, round(len(turns) * 0.25))}
        print(f"seed {seed}: flagged {sorted(hits)}", flush=True)
        steps = 0
        for arm, leave_out in zip(arms, (set(), hits)):
            path = out / f"{arm.replace(' ', '-')}-seed{seed}.json"
            if not path.exists():
                print(f"training on {arm}", flush=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(train_and_judge(turns, held_out, leave_out, args, model, seed, steps)))
                tmp.replace(path)  # a stop mid-write leaves no half-result
            rows[arm].append(json.loads(path.read_text()))
            steps = rows[arm][-1]["steps"]
    print("\n| trained on | seed | training pairs | steps | careful people's held-out pairs: all | detailed (70 %) | "
          "concise (30 %) | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for arm in arms:
        seeds = args.seeds.split(",")
        for seed, r in [*zip(seeds, rows[arm]), ("all", None)]:
            held = {g: pooled(rows[arm], "all", g) for g in ("all people", *GROUPS)} if r is None else r["held_out"]["all"]
            runs = rows[arm] if r is None else [r]
            print(f"| {arm} | {seed} | {sum(x['train_pairs'] for x in runs)} | {sum(x['steps'] for x in runs)} | "
                  f"{cell(held['all people'])} | {cell(held[GROUPS[0]])} | {cell(held[GROUPS[1]])} | "
                  f"{sum(x['seconds'] for x in runs):.0f} |")
    wins = sum(w["held_out"]["all"]["all people"]["accuracy"] > e["held_out"]["all"]["all people"]["accuracy"]
               for e, w in zip(rows["everyone"], rows["without the flagged"]))
    print(f"\nwithout the flagged ranked better on {wins} of {len(rows['everyone'])} seeds")
    return figures + [Figure("raters", f"held-out accuracy of the careful people, trained on {arm}, "
                             f"{len(rows[arm])} seeds pooled", cell(pooled(rows[arm], "all", "all people")))
                      for arm in arms]


if __name__ == "__main__":
    main()
