"""What a participant rates: are the first turn's candidate replies complete?

    python -m bench collection [--prompts 24] [--caps 256,384,512,768] [--seed 0]

For PRISM's real opening prompts, each of the four default reply sources
(their system prompts and sampling, as collection uses them) writes one
candidate with the bundled model through the batch scheduler, once, with the
largest cap. A reply sampled with the same seed is the same token for token
under a smaller cap, so one generation tells, for every cap side by side, the
share of candidates that would stop at the cap mid-sentence ("cut"). The
collection default (COLLECTION_MAX_NEW_TOKENS) is chosen on the first half of
the prompts (the choice split) as the smallest cap that cuts under 5 %; the
figure reported is the second half's (the check split), which the choice never saw.

Then, with ``--layout`` (needs chromium), three of those opening turns are
served as collection pages and opened at 1366x768 and 390x844: how far each
rating slider lies outside its reply's card (target 0 px) and the scroll from
a reply to its slider, against a form after all the replies (bench/collection_layout.py).
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import statistics
import time
from pathlib import Path

from bench.figures import Figure, default_model

PROMPTS_FILE = Path(__file__).resolve().parent.parent / "users" / "prism" / "data" / "opening_prompts.jsonl"
TARGET_CUT = 0.05


def default_sources() -> list[tuple[str, str, float, float]]:
    """(name, system prompt, temperature, top_p) of the sources a fresh install collects with."""
    return importlib.import_module("users.migrations.0003_default_sources").DEFAULTS


def opening_prompts(n: int, seed: int) -> list[str]:
    prompts = [json.loads(line)["prompt"] for line in PROMPTS_FILE.read_text().splitlines() if line.strip()]
    random.Random(seed).shuffle(prompts)
    return prompts[:n]


def generate_lengths(model_path: str, prompts: list[str], cap: int, seed: int,
                     penalties: tuple[float, ...] = (1.0,)) -> list[dict]:
    """One candidate per (prompt, source, repetition penalty) with ``cap`` new tokens: its length and whether it
    ended by itself."""
    from trainer.core.batch_generation import BatchScheduler, GenerationRequest
    from trainer.core.loop import load_base

    lm, tokenizer = load_base(model_path)
    lm.eval()
    scheduler = BatchScheduler(lm, tokenizer, max_batch=8, max_wait=0.05)
    requests = []
    for p, prompt in enumerate(prompts):
        for s, (name, system, temperature, top_p) in enumerate(default_sources()):
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}]
            for penalty in penalties:
                request = GenerationRequest(messages, max_new_tokens=cap, temperature=temperature, top_p=top_p,
                                            repetition_penalty=penalty, seed=seed * 100_000 + p * 10 + s)
                requests.append((p, name, penalty, scheduler.submit(request)))
    rows = []
    for done, (p, name, penalty, request) in enumerate(requests, 1):
        if done % 8 == 0:
            print(f"  {done} of {len(requests)} candidates written", flush=True)
        text = "".join(request.stream())
        rows.append({"prompt": p, "source": name, "penalty": penalty, "tokens": request.tokens, "ended": not request.cut,
                     "words": len(text.split()), "text": text})
    scheduler.close()
    return rows


def kept_rows(model_path: str, prompts: list[str], cap: int, seed: int, penalties: tuple[float, ...]) -> list[dict]:
    """The generation's rows, kept on disk (DATA_DIR/bench) so a rerun, or one stopped half-way through the
    layout part, does not write the same candidates again."""
    import hashlib
    import os

    key = hashlib.sha256(json.dumps([model_path, prompts, cap, seed, penalties]).encode()).hexdigest()[:16]
    path = Path(os.environ.get("DATA_DIR", "data")) / "bench" / f"collection-{key}.json"
    if path.is_file():
        print(f"(candidates read from {path}: delete it to write them again)")
        return json.loads(path.read_text())
    rows = generate_lengths(model_path, prompts, cap, seed, penalties)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows))
    tmp.replace(path)
    return rows


def cut_share(rows: list[dict], cap: int) -> float:
    """Share of candidates that a ``cap``-token limit stops before their end."""
    return sum(1 for r in rows if not r["ended"] or r["tokens"] >= cap) / len(rows)


def choose(rows: list[dict], caps: list[int], penalties: list[float], target: float = TARGET_CUT) -> tuple[float, int]:
    """(penalty, cap) for collection: the smallest cap, then the smallest penalty, that cuts under ``target``;
    when none does, the pair that cuts least (smaller cap, then smaller penalty, on a tie)."""
    options = [(cut_share([r for r in rows if r["penalty"] == penalty], cap), cap, penalty)
               for penalty in penalties for cap in caps]
    under = sorted((cap, penalty) for share, cap, penalty in options if share < target)
    if under:
        return under[0][1], under[0][0]
    _, cap, penalty = min(options)
    return penalty, cap


def main(argv=None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a transformers folder (default: the bundled model)")
    parser.add_argument("--prompts", type=int, default=24, help="opening prompts, half to choose, half to check")
    parser.add_argument("--caps", default="256,384,512,768")
    parser.add_argument("--penalties", default="1.0,1.2", help="repetition penalties compared side by side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", action="store_true", help="also measure the page layout in chromium")
    args = parser.parse_args(argv)
    caps = sorted(int(c) for c in args.caps.split(","))
    penalties = sorted(float(p) for p in args.penalties.split(","))
    model = args.model or default_model()
    prompts = opening_prompts(args.prompts, args.seed)
    start = time.perf_counter()
    rows = kept_rows(model, prompts, max(caps), args.seed, tuple(penalties))
    took = time.perf_counter() - start
    half = len(prompts) // 2
    choice = [r for r in rows if r["prompt"] < half]
    check = [r for r in rows if r["prompt"] >= half]
    print(f"{len(rows)} first-turn candidates ({len(prompts)} PRISM opening prompts x {len(default_sources())} "
          f"sources x {len(penalties)} repetition penalties), each written once with a cap of {max(caps)} tokens, "
          f"in {took:.0f} s")
    print("\n| repetition penalty | cap (tokens) | cut, choice split | cut, check split | cut, all |")
    print("|---|---|---|---|---|")
    for penalty in penalties:
        mine = [r for r in rows if r["penalty"] == penalty]
        for cap in caps:
            print(f"| {penalty:g} | {cap} | {cut_share([r for r in mine if r in choice], cap):.0%} | "
                  f"{cut_share([r for r in mine if r in check], cap):.0%} | {cut_share(mine, cap):.0%} |")
    print("\n| source | repetition penalty | median tokens | median words | ended by itself at the largest cap |")
    print("|---|---|---|---|---|")
    for name, *_ in default_sources():
        for penalty in penalties:
            mine = [r for r in rows if r["source"] == name and r["penalty"] == penalty]
            print(f"| {name} | {penalty:g} | {statistics.median(r['tokens'] for r in mine):.0f} | "
                  f"{statistics.median(r['words'] for r in mine):.0f} | {sum(r['ended'] for r in mine)}/{len(mine)} |")
    penalty, cap = choose(choice, caps, penalties)
    checked = [r for r in check if r["penalty"] == penalty]
    share = cut_share(checked, cap)
    plain = [r for r in check if r["penalty"] == penalties[0]]
    print(f"\nchosen on the choice split: repetition penalty {penalty:g}, cap {cap}; "
          f"on the check split it cuts {share:.0%}")
    figures = [
        Figure("collection", f"first-turn candidates cut at 256 tokens, penalty {penalties[0]:g} (check split)",
               f"{cut_share(plain, 256):.0%}"),
        Figure("collection", f"first-turn candidates cut at the chosen {cap} tokens, penalty {penalty:g} "
               "(check split)", f"{share:.0%}", f"< {TARGET_CUT:.0%}", share < TARGET_CUT),
    ]
    chosen = cap
    if args.layout:  # the check split's first three turns, written again with the chosen cap, as people see them
        from bench.collection_layout import measure

        shown = generate_lengths(model, prompts[half:half + 3], chosen, args.seed + 1, (penalty,))
        figures += measure([[r["text"] for r in shown if r["prompt"] == p] for p in range(3)])
    return figures


if __name__ == "__main__":
    main()
