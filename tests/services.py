"""Real services for integration tests: a Celery worker and an ASGI server as
subprocesses, pointed at pytest-django's test database and a test Redis
database. Tests that use them need committed data: mark them
``@pytest.mark.django_db(transaction=True)``."""

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.models_fixtures import REPO
from trainer.core.ports import free_port  # noqa: F401  (the tests and benchmarks import it from here)


def _database_url(settings_dict: dict) -> str:
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or "5432"
    return f"postgres://{user}@{host}:{port}/{settings_dict['NAME']}"


def service_env(model_path: Path, data_dir: Path, **extra: str) -> dict:
    """The environment a subprocess needs to see exactly what the test sees."""
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="alignment_site.settings",
        DATABASE_URL=_database_url(connection.settings_dict),
        REDIS_URL=settings.REDIS_URL,
        BASE_MODEL=str(model_path),
        DATA_DIR=str(data_dir),
        SECRET_KEY=settings.SECRET_KEY,
        DEBUG="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@contextmanager
def running(cmd: list[str], env: dict, log_path: Path, ready, timeout: float = 90.0):
    """Start a process, wait until ``ready()`` is true, stop it afterwards."""
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[:4]} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[:4]} not ready after {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def worker_ready(log_path: Path, name: str):
    """Celery logs "<name> ready." once it consumes; a solo worker that starts
    training at once never answers a ping, so the log is what to watch."""

    def ready() -> bool:
        return log_path.is_file() and f"{name} ready.".encode() in log_path.read_bytes()

    return ready


def celery_worker_cmd(queue: str, name: str, threads: int = 0) -> list[str]:
    """A Celery worker on ``queue``: one process (solo), or a threads pool as ./run.sh starts `generate`."""
    pool = ["--pool", "threads", "-c", str(threads)] if threads else ["--pool", "solo", "-c", "1"]
    return [sys.executable, "-m", "celery", "-A", "alignment_site", "worker", "-Q", queue, *pool, "-n", name,
            "--without-gossip", "--without-mingle", "-l", "info"]


def wait_until(predicate, timeout: float = 120.0) -> None:
    """Poll ``predicate`` every 0.2 s; fail the test when it is still false after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s"
        time.sleep(0.2)


def http_ready(url: str):
    import urllib.request

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status < 500
        except Exception:
            return False

    return ready


@pytest.fixture(scope="session")
def test_redis():
    """The test Redis database, emptied once per session; skips nothing: Redis must run."""
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RuntimeError(f"The test suite needs Redis at {settings.REDIS_URL}: {exc}") from exc
    client.flushdb()
    return client


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("services")


# Replies in tests are capped so a real model answers in about a second.
TEST_MAX_NEW_TOKENS = 32


@pytest.fixture(scope="session")
def generate_worker(django_db_setup, django_db_blocker, test_redis, bundled_model_path, services_dir):
    """A real Celery worker on the `generate` queue, serving the real bundled SmolLM2."""
    name = f"generate-test-{os.getpid()}@localhost"
    with django_db_blocker.unblock():
        env = service_env(bundled_model_path, services_dir, CHAT_MAX_NEW_TOKENS=str(TEST_MAX_NEW_TOKENS),
                          COLLECTION_MAX_NEW_TOKENS=str(TEST_MAX_NEW_TOKENS))
    log = services_dir / "generate-worker.log"
    with running(celery_worker_cmd("generate", name), env, log, worker_ready(log, name)) as proc:
        yield proc


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, django_db_blocker, test_redis, tiny_model_path, services_dir):
    """uvicorn serving the site over real HTTP (needed for streaming; the
    threaded live_server of Django buffers async streams)."""
    port = free_port()
    with django_db_blocker.unblock():
        env = service_env(tiny_model_path, services_dir)
    cmd = [sys.executable, "-m", "uvicorn", "alignment_site.asgi:application", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]
    base = f"http://127.0.0.1:{port}"
    with running(cmd, env, services_dir / "asgi.log", http_ready(base + "/login/")):
        yield base


@contextmanager
def train_worker(model_path: Path, workdir: Path, name: str, **extra: str):
    """A real Celery worker on the `train` queue; the caller may kill it."""
    env = service_env(model_path, workdir, **{"ARTIFACTS_DIR": str(workdir / "artifacts"),
                                              "TRAIN_HEARTBEAT_SECONDS": "1", **extra})
    log = workdir / f"{name.split('@')[0]}.log"
    try:
        with running(celery_worker_cmd("train", name), env, log, worker_ready(log, name)) as proc:
            yield proc
    finally:  # a killed worker cannot withdraw its device report: it would size later tests' forms
        from trainer import devices

        devices.report_withdraw(name)
