"""The run command supervises what it starts: a worker that dies is restarted with the reason logged,
the web server keeps answering meanwhile, and stopping the command stops every process it started."""

import os
import signal
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.services import free_port, wait_until

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_killed_worker_is_restarted_and_the_site_keeps_answering(tmp_path, tiny_model_path, settings):
    parts = urlsplit(settings.REDIS_URL)
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DATA_DIR": str(tmp_path), "BASE_MODEL": str(tiny_model_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "REDIS_URL": urlunsplit(parts._replace(path=f"/{(int(parts.path.strip('/') or 0) + 6) % 16}"))}
    for name in ("DJANGO_SETTINGS_MODULE", "DEBUG", "SECURE_COOKIES"):  # run.sh's own local-demo choices
        env.pop(name, None)
    log = open(tmp_path / "run.out", "wb")
    run = subprocess.Popen(["bash", "run.sh"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    pids = tmp_path / "run"
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/login/") and (pids / "generate.pid").exists(), 240)
        first = int((pids / "generate.pid").read_text())
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: int((pids / "generate.pid").read_text()) != first, 30)
        second = int((pids / "generate.pid").read_text())
        assert alive(second) and answers(f"http://127.0.0.1:{port}/login/")
        assert run.poll() is None
        supervisor = (tmp_path / "logs" / "supervisor.log").read_text()
        assert f"generate (pid {first}) stopped with exit 137; restarting it" in supervisor
        assert "DEBUG is on for this local demo" in (tmp_path / "run.out").read_text()
        started = {name: int((pids / f"{name}.pid").read_text()) for name in ("generate", "train", "web")}
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
        log.close()
    wait_until(lambda: not any(alive(pid) for pid in started.values()), 30)
    assert not list(pids.glob("*.pid"))
