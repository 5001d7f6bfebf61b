"""The whole product on loopback for a benchmark: a throw-away SQLite database, a Redis database of the
benchmark's own (BENCH_REDIS_URL, default db 8, emptied first), a `generate` worker and uvicorn, and an
HTTP client that logs in and posts as a browser does. Everything stops when the benchmark ends."""

from __future__ import annotations

import http.cookiejar
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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
    from tests.services import celery_worker_cmd, free_port, http_ready, running, worker_ready

    name = "bench@localhost"
    worker = celery_worker_cmd("generate", name, threads=generate_threads if generate_threads > 1 else 0)
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


# --- processes the fault benchmark kills and starts again, and the services it owns -----------------------

class Process:
    """One supervised process of the product: started, killed and started again as ./run.sh would."""

    def __init__(self, name: str, cmd: list[str], env: dict, folder: Path, ready_text: str):
        self.name, self.cmd, self.env, self.folder, self.ready_text = name, cmd, env, folder, ready_text
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.exits: list[str] = []  # exits nobody asked for, each restarted by ``supervise``
        self.lock = threading.Lock()

    def start(self, timeout: float = 180) -> float:
        self.starts += 1
        log_path = self.folder / f"{self.name}-{self.starts}.log"
        started = time.monotonic()
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        while self.ready_text.encode() not in log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() - started > timeout:
                raise RuntimeError(f"{self.name} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL, then started again at once, as ./run.sh's supervisor does."""
        with self.lock:
            if self.proc and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.start()

    def supervise(self) -> None:
        """Started again when it exits by itself (./run.sh's supervisor), the exit noted."""
        with self.lock:
            if self.proc and self.proc.poll() is not None:
                self.exits.append(f"{self.name} exited by itself (code {self.proc.returncode}); restarted")
                print(f"  {self.exits[-1]}", flush=True)
                self.start()

    def stop(self) -> None:
        with self.lock:
            if self.proc and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()


def wait(predicate, timeout: float, every: float = 0.2, what: str = "") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    print(f"  (gave up waiting {timeout:.0f} s{': ' + what if what else ''})", flush=True)
    return False


def fresh_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.strip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise SystemExit(f"bench faults needs PostgreSQL (BENCH_DATABASE_URL={url}): {exc}") from exc


def pings(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


def stream_length(client, key: str) -> int:
    try:
        return client.xlen(key)
    except Exception:
        return 0
