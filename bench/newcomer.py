"""A newcomer served as themself after a few answers: held-out accuracy against the number of questions asked,
adaptive questions against random ones.

    python -m bench newcomer [--model PATH] [--people 20] [--newcomers 20] [--pool 40] [--judge-prompts 2]
                             [--seed 0] [--out DIR]

A version is trained with P-DPO on ``--people`` simulated people (two opposing groups on reply length, 70 % and
30 %, each rating four candidates per conversation by a hidden rule), and kept in ``--out``. The onboarding pool is
prepared from it once (``trainer.core.onboarding``): ``--pool`` prompts the version never saw, each with a detailed
and a concise reply, every pair's margin and slope along the seen people's principal directions; its time is
printed. Then ``--newcomers`` unseen people of each group answer the pool's questions one at a time by their own
hidden rule, the next question chosen adaptively or at random, and after 0, 1, 2, 3, 5, 7 and 10 answers their
vectors (the seen people's mean moved along the directions by the estimate) rank their own held-out pairs (four
conversations each by default, never asked) through the model itself. Printed per group, with 95 % intervals: held-out pair
accuracy by answers for each strategy, the generic vectors' (what a newcomer gets today); the server time per
answer (the update and the next question's choice, median and p95) and its peak memory; and, for
``--judge-prompts`` prompts per newcomer, how often the reply written with their vectors after 10 answers beats
the generic vectors' reply by their hidden rule (ties as half).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path


from bench.figures import Figure, prepared
from bench.gpu_rows import Peak
from bench.pairing import pairs_of, rated_turns
from trainer.core.config import TrainConfig
from trainer.core.hardware import describe_cpu
from trainer.core.onboarding import PairJudge, basis_from_offsets, prepare_pool, seen_offsets
from trainer.core.placement import ADAPTIVE, COUNTS, RANDOM, Answer, estimate, next_question, prior
from users.synthetic.personas import sample_population
from users.synthetic.prompts import PRISM_PROMPTS, SHORT_SYSTEM, prompts_or_default
from users.synthetic.replies import contrasting_styles, generate_reply
from users.synthetic.rule import judge_prefers, score

GROUPS = ("length:detailed", "length:concise")


def train_version(args, model: str, prompts: list[str], out: Path):
    """The version the newcomers meet: trained once on the seen people, then loaded from ``out``."""
    from trainer.core.artifacts import load_run, save_run
    from trainer.core.loop import train

    folder = out / f"version-seed{args.seed}"
    if not (folder / "run.json").is_file():
        people = sample_population(args.people, dimension="length", majority_pole="detailed", majority_share=0.7,
                                   seed=args.seed)
        pairs = pairs_of(rated_turns(people, prompts, args.conversations, args.seed + 1), "best")
        config = TrainConfig(batch_size=8, micro_batch_size=4, epochs=args.epochs, lr_lora=1e-3, lr_user=8e-2,
                             warmup_steps=0, log_every=1000, max_prompt_length=96, max_length=256, seed=args.seed,
                             bf16=args.precision == "bf16")
        started = time.perf_counter()
        result = train(config, model, pairs, log=lambda *_: None,
                       progress=lambda s, t, m: print(f"  training step {s}/{t} ({time.perf_counter() - started:.0f}"
                                                      " s)", flush=True) if s % 10 == 0 or s == t else None)
        save_run(folder, result.model, result.user_index, config, base_model=model,
                 metrics={"train_seconds": time.perf_counter() - started, "pairs": len(pairs)})
    return load_run(folder)


def pool_pairs(prompts: list[str], seed: int):
    """One detailed and one concise reply to each prompt, in a random order: what the seen people disagree on."""
    from trainer.core.data import Pair

    rng = random.Random(seed)
    pairs = []
    for i, prompt in enumerate(prompts):
        a, b = (generate_reply(prompt, style, rng, detailed_sentences=(2, 3))
                for style in contrasting_styles(rng, "length", 2))
        pairs.append(Pair(user_id="newcomer", conversation_id=f"pool{i}",
                          prompt=[{"role": "system", "content": SHORT_SYSTEM}, {"role": "user", "content": prompt}],
                          chosen=[{"role": "assistant", "content": a}], rejected=[{"role": "assistant", "content": b}]))
    return pairs


def onboard(persona, strategy: str, basis, pool, pool_texts, judge: PairJudge, generic, rng, choosing, timings,
            peaks: list[int]):
    """(accuracy after each of COUNTS answers, the estimate after the last) of one newcomer; each answer's server
    time goes to ``timings`` and its peak memory above what was resident before it to ``peaks``."""
    peak = Peak("cpu")
    answers, current, found = [], prior(basis), {}
    for n in range(max(COUNTS) + 1):
        if n in COUNTS:
            found[n] = judge.accuracy(generic + basis.offset(current.mean).reshape(generic.shape))
        if n == max(COUNTS):
            break
        peak.start()
        resident = peak.now()
        started = time.perf_counter()
        question = next_question(pool, answers, current, strategy=strategy, rng=choosing)
        asked = time.perf_counter() - started
        a, b = (score(persona, text, rng) for text in pool_texts[question.key])  # their rule, with its noise
        answers.append(Answer(question.key, a > b or (a == b and rng.random() < 0.5)))
        started = time.perf_counter()
        current = estimate(basis, pool, answers)
        timings.append(asked + time.perf_counter() - started)  # the server's work for one answer
        peaks.append(peak.read() - resident)
    return found, current, answers


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a transformers folder (default: the bundled SmolLM2)")
    ap.add_argument("--prompts", default=str(PRISM_PROMPTS))
    ap.add_argument("--people", type=int, default=20, help="seen people, 70 %% / 30 %%")
    ap.add_argument("--conversations", type=int, default=8, help="per seen person, four rated candidates each")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--newcomers", type=int, default=20, help="per group")
    ap.add_argument("--pool", type=int, default=40, help="onboarding questions prepared")
    ap.add_argument("--held-out", type=int, default=4, help="conversations per newcomer that judge them, never asked")
    ap.add_argument("--directions", type=int, default=6, help="principal directions of the seen people")
    ap.add_argument("--judge-prompts", type=int, default=2, help="generated replies judged per newcomer (0: none)")
    ap.add_argument("--refits", type=int, choices=(0, 1), default=1,
                    help="1: refit one newcomer of each group in the background from their answers (time, memory)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    ap.add_argument("--out", default="bench-results/newcomer", help="the trained version is kept here")
    args = ap.parse_args(argv)
    model, out = prepared(args)
    prompts = prompts_or_default(args.prompts)
    rng = random.Random(args.seed + 10)
    shuffled = prompts[:]
    rng.shuffle(shuffled)
    pool_prompts, rest = shuffled[: args.pool], shuffled[args.pool:]
    if len(rest) < 10:
        raise SystemExit(f"{len(prompts)} prompts leave {len(rest)} beside a pool of {args.pool}: ask a smaller pool")
    print(f"{describe_cpu()}; model {model}; {args.people} seen people, {args.newcomers} newcomers per group, a pool of "
          f"{args.pool} questions; {args.precision}", flush=True)

    run = train_version(args, model, rest, out)  # the pool's prompts stay unseen
    user_model = run.model.user_model
    generic = user_model.vectors_from(user_model.parameter_of(0)).detach().double()
    basis = basis_from_offsets(seen_offsets(user_model), k=args.directions)
    pairs = pool_pairs(pool_prompts, args.seed + 11)
    started = time.perf_counter()
    pool = prepare_pool(run.model, run.tokenizer, run.config, basis, pairs, [p.conversation_id for p in pairs])
    pool_seconds = time.perf_counter() - started
    pool_texts = {p.conversation_id: (p.chosen[0]["content"], p.rejected[0]["content"]) for p in pairs}
    print(f"pool of {len(pool)} pairs along {basis.k} directions prepared in {pool_seconds:.1f} s", flush=True)

    newcomers = sample_population(2 * args.newcomers, dimension="length", majority_pole="detailed",
                                  majority_share=0.5, seed=args.seed + 20, prefix="newcomer")
    results = {s: {g: {n: [] for n in COUNTS} for g in GROUPS} for s in (ADAPTIVE, RANDOM)}
    generic_accuracy = {g: [] for g in GROUPS}
    timings: list[float] = []
    peaks: list[int] = []
    wins = {g: [] for g in GROUPS}
    kept = Kept(out / f"newcomers-seed{args.seed}.jsonl", {k: getattr(args, k) for k in KEY})
    for i, persona in enumerate(newcomers):
        row = kept.rows.get(i)
        if row is None:
            row = newcomer_row(args, run, persona, i, rest, basis, pool, pool_texts, generic)
            kept.add(i, row)
        generic_accuracy[persona.group].append(row["generic"])
        for strategy in (ADAPTIVE, RANDOM):
            for n in COUNTS:
                results[strategy][persona.group][n].append(row[strategy][str(n)])
        wins[persona.group] += row["wins"]
        timings += row["timings"]
        peaks += row["peaks"]
        print(f"  newcomer {i + 1}/{len(newcomers)} ({persona.group}): adaptive {row[ADAPTIVE]['10']:.0%}, random "
              f"{row[RANDOM]['10']:.0%} after 10 answers" + (" (kept from an earlier run)" if i in kept.earlier else ""),
              flush=True)

    print("\n| group | strategy | " + " | ".join(f"{n} answers" for n in COUNTS) + " | generic vectors |")
    print("|---|---|" + "---|" * (len(COUNTS) + 1))
    figures = []
    for group in GROUPS:
        for strategy in (ADAPTIVE, RANDOM):
            means = [mean_cell(results[strategy][group][n]) for n in COUNTS]
            print(f"| {group} | {strategy} | " + " | ".join(means) + f" | {mean_cell(generic_accuracy[group])} |")
        after = statistics.mean(results[ADAPTIVE][group][10])
        figures.append(Figure("newcomer", f"{group}: held-out accuracy after 10 adaptive answers",
                              mean_cell(results[ADAPTIVE][group][10]), ">= 85 %", after >= 0.85))
        three = statistics.mean(results[ADAPTIVE][group][3]) - statistics.mean(results[RANDOM][group][3])
        figures.append(Figure("newcomer", f"{group}: adaptive minus random after 3 answers",
                              f"{three * 100:+.1f} points", "> 0", three > 0))
    ms = sorted(t * 1000 for t in timings)
    print(f"\nserver time per answer (update and next question): median {statistics.median(ms):.2f} ms, p95 "
          f"{ms[int(0.95 * (len(ms) - 1))]:.2f} ms over {len(ms)} answers; peak memory of an answer's work "
          f"{max(peaks) / 2**20:.1f} MiB above what was resident before it (the loaded model); pool prepared in "
          f"{pool_seconds:.1f} s", flush=True)
    figures.append(Figure("newcomer", "peak memory of an answer's work above the loaded model",
                          f"{max(peaks) / 2**20:.1f} MiB", "<= 1 GiB", max(peaks) <= 2**30))
    figures.append(Figure("newcomer", "server time per answer, median", f"{statistics.median(ms):.2f} ms", "<= 1 s",
                          statistics.median(ms) <= 1000))
    figures.append(Figure("newcomer", "onboarding pool prepared", f"{pool_seconds:.0f} s for {len(pool)} pairs"))
    if args.refits:
        for group in GROUPS:
            persona = next(p for p in newcomers if p.group == group)
            figures.append(background_refit(args, run, persona, newcomers.index(persona), rest, basis, pool,
                                            pool_texts, generic, pairs))
    if args.judge_prompts:
        from trainer.core.winrate import win_rate

        for group in GROUPS:
            rate = win_rate(wins[group])
            print(f"{group}: replies with the newcomer's vectors after 10 answers beat the generic vectors' "
                  f"{rate.text()}", flush=True)
            target = ">= 70 %" if group == GROUPS[1] else ""
            figures.append(Figure("newcomer", f"{group}: own replies beat the generic vectors' after 10 answers",
                                  rate.text(), target, (rate.rate or 0) >= 0.7 if target else None))
    from bench.chart import line_chart

    series = {f"{group.split(':')[1]}, {strategy}": [statistics.mean(results[strategy][group][n]) for n in COUNTS]
              for group in GROUPS for strategy in (ADAPTIVE, RANDOM)}
    chart = out / f"curve-seed{args.seed}.svg"
    chart.write_text(line_chart(list(COUNTS), series, title="Newcomers' held-out pair accuracy by answers",
                                x_label="answers", y_label="held-out pair accuracy", guide=(0.85, "target 85 %")))
    print(f"the curve: {chart}", flush=True)
    (out / f"results-seed{args.seed}.json").write_text(json.dumps(
        {"results": results, "generic": generic_accuracy, "timings_ms": ms, "pool_seconds": pool_seconds}))
    return figures


KEY = ("model", "people", "conversations", "epochs", "newcomers", "pool", "held_out", "directions", "judge_prompts", "seed",
       "precision")


class Kept:
    """Each finished newcomer's figures, one JSON line each, so that a stopped run resumes where it was; lines
    written under other settings are set aside."""

    def __init__(self, path: Path, settings: dict):
        self.path, self.settings, self.rows = path, json.loads(json.dumps(settings)), {}
        lines = path.read_text().splitlines() if path.is_file() else []
        if lines and json.loads(lines[0]) == self.settings:
            for line in lines[1:]:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by the stop
                    continue
                self.rows[record["i"]] = record["row"]
        else:
            if lines:
                path.replace(path.with_suffix(".earlier-settings.jsonl"))
            path.write_text(json.dumps(self.settings) + "\n")
        self.earlier = set(self.rows)

    def add(self, i: int, row: dict) -> None:
        self.rows[i] = row
        with self.path.open("a") as f:
            f.write(json.dumps({"i": i, "row": row}) + "\n")
            f.flush()


def newcomer_row(args, run, persona, i, rest, basis, pool, pool_texts, generic) -> dict:
    """One newcomer's figures: held-out accuracy with the generic vectors and after each count of answers for
    both strategies, the judged outcomes, and each answer's server time and peak memory."""
    held = pairs_of(rated_turns([persona], rest, args.held_out, args.seed + 100 + i), "best")
    judge = PairJudge(run.model, run.tokenizer, run.config, held)
    row = {"group": persona.group, "generic": judge.accuracy(generic), "wins": [], "timings": [], "peaks": []}
    for strategy in (ADAPTIVE, RANDOM):
        found, last, _ = onboard(persona, strategy, basis, pool, pool_texts, judge, generic,
                              random.Random(args.seed + 200 + i), random.Random(args.seed + 300 + i), row["timings"],
                              row["peaks"])
        row[strategy] = {str(n): accuracy for n, accuracy in found.items()}
        if strategy == ADAPTIVE and args.judge_prompts:
            row["wins"] = judged(run, persona, generic, basis, last, random.Random(i).sample(rest, args.judge_prompts))
    return row


def background_refit(args, run, persona, i, rest, basis, pool, pool_texts, generic, pool_pairs) -> Figure:
    """The full refit a newcomer's answers later set off (``fast_fit``, the LoRA frozen): its time and peak memory
    above the loaded model, and whether it ranks the newcomer's own answered pairs better than the quick vectors
    (the rule that lets it replace them) and their held-out pairs."""
    from dataclasses import replace

    from trainer.core.config import FastFitConfig
    from trainer.core.fastfit import fast_fit
    from trainer.core.usermodel import UserIndex
    from trainer.core.placement import ranks_better

    held = pairs_of(rated_turns([persona], rest, args.held_out, args.seed + 100 + i), "best")
    judge = PairJudge(run.model, run.tokenizer, run.config, held)
    _, current, answers = onboard(persona, ADAPTIVE, basis, pool, pool_texts, judge, generic,
                                  random.Random(args.seed + 200 + i), random.Random(args.seed + 300 + i), [], [])
    by_key = {p.conversation_id: p for p in pool_pairs}
    own = [replace(by_key[a.key], user_id=persona.user_id) if a.a_better else
           replace(by_key[a.key], user_id=persona.user_id, chosen=by_key[a.key].rejected,
                   rejected=by_key[a.key].chosen) for a in answers]
    quick = generic + basis.offset(current.mean).reshape(generic.shape)
    peak = Peak("cpu")
    peak.start()
    resident = peak.now()
    report = fast_fit(run.model, run.tokenizer, UserIndex(), run.config, persona.user_id, own,
                      fit=FastFitConfig(rounds=1))
    used = peak.read() - resident
    fitted = run.model.user_model.vectors_from(run.model.user_model.parameter_of(report.row)).detach().double()
    mine = PairJudge(run.model, run.tokenizer, run.config, own)
    replaces = ranks_better(mine.rank(fitted), mine.rank(quick))
    print(f"{persona.group}: background refit from {len(own)} answers in {report.seconds:.0f} s, peak "
          f"{used / 2**30:.2f} GiB above the loaded model; on their own pairs it "
          f"{'ranks better, so it replaces' if replaces else 'does not rank better, so it leaves'} the quick "
          f"vectors; held-out accuracy {judge.accuracy(fitted):.0%} against the quick vectors' "
          f"{judge.accuracy(quick):.0%}", flush=True)
    return Figure("newcomer", f"{persona.group}: peak memory of the background refit from {len(own)} answers",
                  f"{used / 2**30:.2f} GiB", "<= 4 GiB", used <= 4 * 2**30)


def mean_cell(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values)
    half = 1.96 * statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return f"{mean:.1%} ± {half * 100:.0f}"


def judged(run, persona, generic, basis, current, prompts: list[str]) -> list[float]:
    """Outcomes (1, 0.5, 0) of the newcomer's own replies against the generic vectors', by their hidden rule."""
    from trainer.core.generation import generate_text
    from trainer.core.winrate import outcome

    own = generic + basis.offset(current.mean).reshape(generic.shape)
    outcomes = []
    for prompt in prompts:
        messages = [{"role": "system", "content": SHORT_SYSTEM}, {"role": "user", "content": prompt}]
        texts = [generate_text(run.model.lm, run.tokenizer, messages, soft_prompt=v.float(), max_new_tokens=160,
                               temperature=0.0) for v in (own, generic)]
        outcomes.append(outcome(float(judge_prefers(persona, texts[0], texts[1])),
                                float(judge_prefers(persona, texts[1], texts[0]))))
    return outcomes


if __name__ == "__main__":
    main()
