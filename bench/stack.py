"""The whole product on loopback for a benchmark: a throw-away SQLite database, a Redis database of the
benchmark's own (BENCH_REDIS_URL, default db 8, emptied first), a `generate` worker and uvicorn, and an
HTTP client that logs in and posts as a browser does. Everything stops when the benchmark ends."""

from __future__ import annotations

import http.cookiejar
import os
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def setup_django(workdir: Path, **env: str) -> str:
    """Configure and start Django for the benchmark; the base model's folder (converted once if bundled)."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="alignment_site.settings", DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8"), SECRET_KEY="bench-only-" + "k3y-" * 12,
        DEBUG="0", SECURE_COOKIES="0", ALLOWED_HOSTS="127.0.0.1", **env)
    os.environ.setdefault("DATA_DIR", str(REPO / "data"))
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command

    from trainer.core import provision

    if settings.BASE_MODEL == provision.BUNDLED:
        provision.convert_bundled(settings.DATA_DIR)
    model_path = provision.resolve(settings.BASE_MODEL, settings.DATA_DIR).path
    os.environ["BASE_MODEL"] = str(model_path)
    call_command("migrate", verbosity=0)
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # a fresh database restarts reply ids: old streams must go
    return str(model_path)


@contextmanager
def web_stack(workdir: Path, *, generate_threads: int = 1):
    """uvicorn and one `generate` worker (threads pool when ``generate_threads`` > 1); yields the base URL."""
    from tests.services import free_port, http_ready, running, worker_ready

    name = "bench@localhost"
    pool = ["--pool", "threads", "-c", str(generate_threads)] if generate_threads > 1 else ["--pool", "solo", "-c", "1"]
    worker = [sys.executable, "-m", "celery", "-A", "alignment_site", "worker", "-Q", "generate", *pool, "-n", name,
              "--without-gossip", "--without-mingle", "-l", "info"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    with running(worker, env, workdir / "worker.log", worker_ready(workdir / "worker.log", name), timeout=120):
        with running([sys.executable, "-m", "uvicorn", "alignment_site.asgi:application", "--port", str(port),
                      "--log-level", "warning"], env, workdir / "web.log", http_ready(base + "/login/")):
            yield base


def workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


class WebClient:
    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.jar if c.name == name)

    def post(self, path: str, data: dict, **headers):
        data = {**data, "csrfmiddlewaretoken": self.cookie("csrftoken")}
        request = urllib.request.Request(self.base + path, data=urllib.parse.urlencode(data).encode(),
                                         headers={"Referer": self.base + "/", **headers})
        return self.opener.open(request, timeout=120)

    def login(self, username: str, password: str) -> None:
        self.opener.open(self.base + "/login/", timeout=30).read()
        self.post("/login/", {"username": username, "password": password}).read()
        deadline = time.monotonic() + 5
        while "sessionid" not in {c.name for c in self.jar}:
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not log in as {username}")
            time.sleep(0.05)
