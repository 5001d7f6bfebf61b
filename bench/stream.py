"""Streaming through the whole web path against generate() in-process.

    python -m bench stream [--tokens 64] [--runs 3]

Same prompt, same model (BASE_MODEL, default the bundled SmolLM2), greedy
decoding on both sides so both produce the same tokens. The web path is
HTTP POST → Django view → database → Celery (Redis) → worker → Redis Stream →
async view → Server-Sent Events, measured at an HTTP client. It runs on a
throw-away SQLite database and Redis database 8 (REDIS_URL to change).
Prints time to first token and tokens/s for both, and their ratio.
"""

import argparse
import os
import re
import statistics
import sys
import time
import urllib.parse
import urllib.request

from bench.figures import Figure
from bench.stack import WebClient, setup_django, web_stack, workdir

PROMPT = "Give me three tips for staying focused while studying."


def in_process(model_path: str, tokens: int, runs: int) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.core.generation import stream_generate

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    results = []
    for _ in range(runs + 1):  # the first run warms up
        started = time.perf_counter()
        stamps = [time.perf_counter() for _ in stream_generate(
            model, tokenizer, [{"role": "user", "content": PROMPT}], max_new_tokens=tokens, temperature=0)]
        results.append(_figures(started, stamps[0], stamps[-1], len(stamps)))
    del model
    return results[1:]


def _figures(started: float, first: float, last: float, n: int) -> dict:
    return {"ttft_ms": (first - started) * 1000, "tokens": n, "tok_s": (n - 1) / (last - first)}


def through_web(base: str, tokens: int, runs: int) -> list[dict]:
    from tests.sse import events

    client = WebClient(base)
    client.login("bench", "bench-pass-123")
    conversation = client.post("/chat/new/", {}).geturl()
    path = urllib.parse.urlparse(conversation).path
    results = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        html = client.post(path + "send/", {"message": PROMPT}, **{"HX-Request": "true"}).read().decode()
        reply_id = re.search(r'id="reply-(\d+)"', html).group(1)
        first = last = None
        names = []
        for event in events(f"{base}/replies/{reply_id}/stream/", session_cookie=client.cookie("sessionid")):
            names.append(event.name)
            if event.name == "token":
                first = first or event.at
                last = event.at
            elif event.name == "done":
                break
        from users.models import Reply

        reply = Reply.objects.get(pk=reply_id)
        if reply.status != Reply.Status.DONE or first is None or first == last:
            sys.exit(f"reply {reply_id} ended {reply.status!r} with {reply.token_count} tokens: {reply.error} "
                     f"(events seen: {names[:5]}{'…' if len(names) > 5 else ''})")
        count = reply.token_count
        results.append(_figures(started, first, last, count))
        # A fresh conversation each time, so every prompt has the same length.
        path = urllib.parse.urlparse(client.post("/chat/new/", {}).geturl()).path
    return results[1:]


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    folder = workdir("bench-stream-")
    model_path = setup_django(folder, CHAT_TEMPERATURE="0", CHAT_MAX_NEW_TOKENS=str(args.tokens))
    from django.contrib.auth import get_user_model

    from users.accounts.onboarding import consent_give

    consent_give(user=get_user_model().objects.create_user("bench", password="bench-pass-123"))

    print(f"model {model_path}\nprompt {PROMPT!r}, {args.tokens} new tokens, greedy, median of {args.runs} runs "
          f"after one warm-up, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    with web_stack(folder) as base:
        web = through_web(base, args.tokens, args.runs)
    local = in_process(model_path, args.tokens, args.runs)

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    print(f"\n{'path':<34}{'first token (ms)':>18}{'tokens/s':>12}{'tokens':>8}")
    print(f"{'generate() in-process':<34}{med(local, 'ttft_ms'):>18.0f}{med(local, 'tok_s'):>12.1f}"
          f"{med(local, 'tokens'):>8.0f}")
    print(f"{'web: HTTP+Celery+Redis+SSE':<34}{med(web, 'ttft_ms'):>18.0f}{med(web, 'tok_s'):>12.1f}"
          f"{med(web, 'tokens'):>8.0f}")
    ratio = med(web, 'tok_s') / med(local, 'tok_s')
    added = med(web, 'ttft_ms') - med(local, 'ttft_ms')
    print(f"\nweb / in-process tokens/s: {ratio:.2f}x (target >= 0.90)")
    print(f"first token added by the web path: {added:+.0f} ms (target <= 150 ms)")
    return [
        Figure("stream", "tokens/s through the web path / in-process", f"{ratio:.2f}x "
               f"({med(web, 'tok_s'):.1f} / {med(local, 'tok_s'):.1f})", ">= 0.90x", ratio >= 0.90),
        Figure("stream", "first token added by the web path", f"{added:+.0f} ms", "<= 150 ms", added <= 150),
    ]
