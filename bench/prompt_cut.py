"""Building the prompt of a long chat: the bisected history cut against dropping one message at a time.

    python -m bench prompt_cut [--turns 50 100 200] [--budget 1024]

The bundled model's tokenizer and chat template, a conversation of N turns
(each user message about 40 words, each reply about 120), cut to the
``CHAT_MAX_PROMPT_TOKENS`` default. Both ways give the same prompt (checked);
the figure is the time, on the thread every reply shares.
"""

from __future__ import annotations

import argparse
import random
import time

from bench.figures import Figure, default_model
from trainer.core import sequences


def one_at_a_time(tokenizer, messages: list[dict], budget: int) -> tuple[list[int], int]:
    """The obvious way (what the product did before): drop the oldest message, re-template the rest, repeat
    until it fits; (prompt ids, messages dropped). The tests use it as the reference for the bisected cut."""
    ids = sequences._template_ids(tokenizer, messages, generation_prompt=True)
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    history, dropped = messages[len(head):], 0
    while len(history) > 1 and len(ids) > budget:
        history, dropped = history[1:], dropped + 1
        while len(history) > 1 and history[0]["role"] != "user":
            history, dropped = history[1:], dropped + 1
        ids = sequences._template_ids(tokenizer, head + history, generation_prompt=True)
    return ids[-budget:], dropped


def chat(turns: int, rng: random.Random) -> list[dict]:
    words = "the model answer people value time life work family help think good idea because world".split()
    say = lambda n: " ".join(rng.choice(words) for _ in range(n))  # noqa: E731
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    for _ in range(turns):
        messages += [{"role": "user", "content": say(40)}, {"role": "assistant", "content": say(120)}]
    return messages + [{"role": "user", "content": say(40)}]


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a transformers folder or hub id (default: the bundled SmolLM2)")
    ap.add_argument("--turns", type=int, nargs="+", default=[50, 100, 200])
    ap.add_argument("--budget", type=int, default=1024)
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model or default_model())
    print(f"{'turns':>6}{'bisected (ms)':>16}{'one at a time (ms)':>20}{'ratio':>8}")
    figures = []
    for turns in args.turns:
        messages = chat(turns, random.Random(turns))
        start = time.perf_counter()
        ours = sequences.encode_prompt(tokenizer, messages, max_prompt_length=args.budget).ids
        bisected = time.perf_counter() - start
        start = time.perf_counter()
        obvious, _ = one_at_a_time(tokenizer, messages, args.budget)
        naive = time.perf_counter() - start
        if ours != obvious:
            raise SystemExit(f"{turns} turns: the two cuts differ")
        print(f"{turns:>6}{bisected * 1000:>16.0f}{naive * 1000:>20.0f}{naive / bisected:>7.0f}x", flush=True)
        figures.append(Figure("prompt_cut", f"prompt of a {turns}-turn chat, cut to {args.budget} tokens",
                              f"{bisected * 1000:.0f} ms (one at a time: {naive:.1f} s, {naive / bisected:.0f}x)",
                              "< 1 s", bisected < 1.0))
    return figures
