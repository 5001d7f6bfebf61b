"""Many people chatting at once through the whole web path, on loopback, bounded, stopping by itself.

    python -m bench load [--people 10] [--messages 5] [--tokens 24]

The bundled model in one `generate` worker with the run command's threads pool (replies of different
people share forward passes), uvicorn, a throw-away SQLite database and Redis database 8. Two rounds,
each with ``--people`` people sending ``--messages`` messages one after another (each following its
reply's SSE stream to the end), all people at once:

1. everyone with a fresh chat;
2. the same, except that one person's chat already holds 200 turns (their prompt is cut to
   CHAT_MAX_PROMPT_TOKENS on the worker's shared thread).

Printed: replies completed and stored, replies failed (none should be), first-token median and p90
(from the POST to the first token at the client), and how much the long chat delayed the others'
first token (round 2 / round 1, medians).
"""

from __future__ import annotations

import argparse
import re
import statistics
import threading
import time
import urllib.parse

from bench.figures import Figure
from bench.stack import WebClient, setup_django, web_stack, workdir

PASSWORD = "load-bench-pass-7"
PROMPTS = ["What should I cook tonight?", "How do I start running?", "Why is the sky blue?",
           "Give me a tip for sleeping better.", "How can I save money on groceries?"]


def person(base: str, username: str, messages: int, out: list[dict], conversation: int | None) -> None:
    """Send ``messages`` messages one after another, each followed to its end over SSE."""
    from tests.sse import events

    client = WebClient(base)
    client.login(username, PASSWORD)
    path = f"/chat/{conversation}/" if conversation else urllib.parse.urlparse(
        client.post("/chat/new/", {}).geturl()).path
    for i in range(messages):
        started = time.perf_counter()
        html = client.post(path + "send/", {"message": PROMPTS[i % len(PROMPTS)]},
                           **{"HX-Request": "true"}).read().decode()
        reply_id = int(re.search(r'id="reply-(\d+)"', html).group(1))
        first = None
        for event in events(f"{base}/replies/{reply_id}/stream/", session_cookie=client.cookie("sessionid"),
                            timeout=600):
            if event.name in ("token", "done") and first is None:
                first = event.at
            if event.name == "done":
                break
        out.append({"user": username, "reply": reply_id, "ttft_ms": (first - started) * 1000 if first else None})


def long_chat(user, turns: int) -> int:
    from users.models import Conversation, Reply, Turn

    conversation = Conversation.objects.create(user=user, title="a long chat")
    words = "the model answer people value time life work family help think good idea because world".split()
    for t in range(turns):
        turn = Turn.objects.create(conversation=conversation, index=t,
                                   user_message=" ".join(words[(t + k) % len(words)] for k in range(40)))
        Reply.objects.create(turn=turn, status=Reply.Status.DONE, chosen=True, source="personal",
                             content=" ".join(words[(t * 3 + k) % len(words)] for k in range(120)))
    return conversation.pk


def one_round(base: str, names: list[str], messages: int, conversations: dict) -> list[dict]:
    results: list[dict] = []
    threads = [threading.Thread(target=person, args=(base, n, messages, results, conversations.get(n)))
               for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=1800)  # bounded: a round that hangs ends the benchmark
    return results


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(round(0.9 * len(values))) - 1)]


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=10)
    ap.add_argument("--messages", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=24, help="new tokens per reply")
    ap.add_argument("--history", type=int, default=200, help="turns in the long chat of round 2")
    args = ap.parse_args(argv)
    folder = workdir("bench-load-")
    model = setup_django(folder, CHAT_MAX_NEW_TOKENS=str(args.tokens))
    from django.contrib.auth import get_user_model

    from users.accounts.onboarding import consent_give
    from users.models import Reply

    names = [f"person{i + 1}" for i in range(args.people)]
    users = {n: get_user_model().objects.create_user(n, password=PASSWORD) for n in names}
    for user in users.values():
        consent_give(user=user)  # people who agreed to take part: chat is theirs
    print(f"model {model}; {args.people} people x {args.messages} messages at once, {args.tokens} new tokens each; "
          f"one generate worker, 8 threads", flush=True)
    with web_stack(folder, generate_threads=8) as base:
        person(base, names[0], 1, [], None)  # warm-up: the worker loads the model
        started = time.perf_counter()
        plain = one_round(base, names, args.messages, {})
        print(f"round 1 (fresh chats): {len(plain)} replies in {time.perf_counter() - started:.0f} s", flush=True)
        long_id = long_chat(users[names[0]], args.history)
        started = time.perf_counter()
        mixed = one_round(base, names, args.messages, {names[0]: long_id})
        print(f"round 2 ({names[0]} with a {args.history}-turn chat): {len(mixed)} replies in "
              f"{time.perf_counter() - started:.0f} s", flush=True)

    ids = [r["reply"] for r in plain + mixed]
    rows = {r.pk: r for r in Reply.objects.filter(pk__in=ids)}
    stored = sum(1 for i in ids if rows[i].status == Reply.Status.DONE and rows[i].content)
    failed = [rows[i] for i in ids if rows[i].status == Reply.Status.FAILED]
    expected = 2 * args.people * args.messages
    others = lambda rs: [r["ttft_ms"] for r in rs if r["user"] != names[0] and r["ttft_ms"]]  # noqa: E731
    first = [r["ttft_ms"] for r in plain if r["ttft_ms"]]
    delay = statistics.median(others(mixed)) / statistics.median(others(plain))
    print(f"\nreplies completed and stored: {stored} / {expected}")
    print(f"replies failed: {len(failed)} {[r.error for r in failed[:2]]}")
    print(f"first token, round 1: median {statistics.median(first):.0f} ms, p90 {p90(first):.0f} ms")
    print(f"others' first token with a {args.history}-turn chat among them: {delay:.2f}x round 1's median")
    return [
        Figure("load", f"replies completed and stored ({args.people} people x {args.messages} x 2 rounds)",
               f"{stored} / {expected}", f"{expected} / {expected}", stored == expected),
        Figure("load", "replies failed", str(len(failed)), "0", not failed),
        Figure("load", "first token with everyone at once (median / p90)",
               f"{statistics.median(first):.0f} / {p90(first):.0f} ms"),
        Figure("load", f"others' first token with a {args.history}-turn chat among them", f"{delay:.2f}x",
               "<= 2x", delay <= 2),
    ]
