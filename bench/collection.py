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

Then, with ``--layout`` (needs chromium), the collection page is rendered with
four long candidates at 1366x768 and 390x844 and the distance between each
reply's card and its rating slider is measured (0 px: the slider is inside the card).
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


def generate_lengths(model_path: str, prompts: list[str], cap: int, seed: int) -> list[dict]:
    """One candidate per (prompt, source) with ``cap`` new tokens: its length and whether it ended by itself."""
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
            request = GenerationRequest(messages, max_new_tokens=cap, temperature=temperature, top_p=top_p,
                                        seed=seed * 100_000 + p * 10 + s)
            requests.append((p, name, scheduler.submit(request)))
    rows = []
    for p, name, request in requests:
        text = "".join(request.stream())
        rows.append({"prompt": p, "source": name, "tokens": request.tokens, "ended": not request.cut,
                     "words": len(text.split())})
    scheduler.close()
    return rows


def cut_share(rows: list[dict], cap: int) -> float:
    """Share of candidates that a ``cap``-token limit stops before their end."""
    return sum(1 for r in rows if not r["ended"] or r["tokens"] >= cap) / len(rows)


def choose_cap(rows: list[dict], caps: list[int], target: float = TARGET_CUT) -> int:
    """The smallest cap whose cut share is under ``target``; the largest when none is."""
    for cap in sorted(caps):
        if cut_share(rows, cap) < target:
            return cap
    return max(caps)


def main(argv=None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a transformers folder (default: the bundled model)")
    parser.add_argument("--prompts", type=int, default=24, help="opening prompts, half to choose, half to check")
    parser.add_argument("--caps", default="256,384,512,768")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", action="store_true", help="also measure the page layout in chromium")
    args = parser.parse_args(argv)
    caps = sorted(int(c) for c in args.caps.split(","))
    model = args.model or default_model()
    prompts = opening_prompts(args.prompts, args.seed)
    start = time.perf_counter()
    rows = generate_lengths(model, prompts, max(caps), args.seed)
    took = time.perf_counter() - start
    half = len(prompts) // 2
    choice = [r for r in rows if r["prompt"] < half]
    check = [r for r in rows if r["prompt"] >= half]
    print(f"{len(rows)} first-turn candidates ({len(prompts)} PRISM opening prompts x {len(default_sources())} "
          f"sources), generated once with a cap of {max(caps)} tokens in {took:.0f} s")
    print("\n| cap (tokens) | cut, choice split | cut, check split | cut, all |")
    print("|---|---|---|---|")
    for cap in caps:
        print(f"| {cap} | {cut_share(choice, cap):.0%} | {cut_share(check, cap):.0%} | {cut_share(rows, cap):.0%} |")
    print("\n| source | median tokens | longest | ended by itself at the largest cap |")
    print("|---|---|---|---|")
    for name, *_ in default_sources():
        mine = [r for r in rows if r["source"] == name]
        print(f"| {name} | {statistics.median(r['tokens'] for r in mine):.0f} | {max(r['tokens'] for r in mine)} | "
              f"{sum(r['ended'] for r in mine)}/{len(mine)} |")
    chosen = choose_cap(choice, caps)
    share = cut_share(check, chosen)
    print(f"\nsmallest cap under {TARGET_CUT:.0%} cut on the choice split: {chosen}; "
          f"on the check split it cuts {share:.0%}")
    figures = [
        Figure("collection", "first-turn candidates cut at the old 256-token cap (check split)",
               f"{cut_share(check, 256):.0%}"),
        Figure("collection", f"first-turn candidates cut at the chosen cap {chosen} (check split)", f"{share:.0%}",
               f"< {TARGET_CUT:.0%}", share < TARGET_CUT),
    ]
    if args.layout:
        from bench.collection_layout import measure

        figures += measure()
    return figures


if __name__ == "__main__":
    main()
