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
import http.cookiejar
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from bench.figures import Figure

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


class WebClient:
    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.jar if c.name == name)

    def post(self, path: str, data: dict, **headers) -> urllib.request.Request:
        data = {**data, "csrfmiddlewaretoken": self.cookie("csrftoken")}
        request = urllib.request.Request(self.base + path, data=urllib.parse.urlencode(data).encode(),
                                         headers={"Referer": self.base + "/", **headers})
        return self.opener.open(request)

    def login(self, username: str, password: str) -> None:
        self.opener.open(self.base + "/login/").read()
        self.post("/login/", {"username": username, "password": password}).read()


def through_web(base: str, tokens: int, runs: int) -> list[dict]:
    from tests.services import http_ready
    from tests.sse import events

    deadline = time.monotonic() + 60
    while not http_ready(base + "/login/")():
        if time.monotonic() > deadline:
            sys.exit("the web server did not start")
        time.sleep(0.2)
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

    workdir = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    repo = Path(__file__).resolve().parents[1]
    os.environ.update(
        DJANGO_SETTINGS_MODULE="alignment_site.settings",
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8"),
        CHAT_TEMPERATURE="0", CHAT_MAX_NEW_TOKENS=str(args.tokens), SECRET_KEY="bench-only-" + "k3y-" * 12, DEBUG="0",
        SECURE_COOKIES="0",
        ALLOWED_HOSTS="127.0.0.1",
    )
    os.environ.setdefault("DATA_DIR", str(repo / "data"))
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from tests.services import celery_worker_cmd, free_port, running, worker_ready
    from trainer import provision

    if settings.BASE_MODEL == provision.BUNDLED:
        provision.convert_bundled(settings.DATA_DIR)
    model_path = provision.resolve(settings.BASE_MODEL, settings.DATA_DIR).path
    os.environ["BASE_MODEL"] = model_path
    call_command("migrate", verbosity=0)
    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # a fresh database restarts reply ids: old streams must go
    get_user_model().objects.create_user("bench", password="bench-pass-123")

    print(f"model {model_path}\nprompt {PROMPT!r}, {args.tokens} new tokens, greedy, median of {args.runs} runs "
          f"after one warm-up, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    port = free_port()
    env = dict(os.environ)
    with running(celery_worker_cmd("generate", "bench@localhost"), env, workdir / "worker.log",
                 worker_ready(workdir / "worker.log", "bench@localhost"), timeout=120):
        with running([sys.executable, "-m", "uvicorn", "alignment_site.asgi:application", "--port", str(port),
                      "--log-level", "warning"], env, workdir / "web.log", lambda: True):
            web = through_web(f"http://127.0.0.1:{port}", args.tokens, args.runs)
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
