"""Where the generate worker finds a vLLM server for a model (SERVING_BACKEND=vllm).

Two modes:

- ``VLLM_URL`` set: servers someone else runs (another machine, tensor-parallel across its GPUs). The
  worker asks each for its models (``/v1/models``) and uses the first that serves the name it needs; when none
  does, the reply fails with the command that starts one.
- ``VLLM_URL`` empty: the worker starts servers itself, on 127.0.0.1, from vLLM's own environment
  (``VLLM_PYTHON``), one per model (the base model, or a version's merged folder), at most
  ``VLLM_MAX_SERVERS`` at once (the least recently used one stops first). Each server's log is
  ``DATA_DIR/logs/vllm-<name>.log`` and its pid file ``DATA_DIR/run/vllm-<name>.pid`` (``<worker pid>
  <server pid>``): a worker that was killed leaves its servers running, and the next one stops them.

Either way the state of each server is published in Redis (hash ``vllm:servers``), which the status page
reads. Only this module starts or stops servers; the browser never reaches them. Imported by the web
process for ``states`` too, so torch is imported only where a server is used.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

log = logging.getLogger(__name__)

STATE_KEY = "vllm:servers"
FAILURE_HOLD_SECONDS = 30  # replies waiting on a start that failed fail at once, not one start each
FOUND_SECONDS = 10  # how long a VLLM_URL lookup is trusted before asking the servers again


@dataclass
class LocalServer:
    name: str
    folder: str
    proc: subprocess.Popen
    url: str
    log_path: Path
    used: float = field(default_factory=time.monotonic)


@dataclass
class _Starting:
    """A server not ready yet: its process once started, and whether the worker's shutdown asked it to give up."""
    proc: subprocess.Popen | None = None
    given_up: threading.Event = field(default_factory=threading.Event)


def base_name(folder: str | Path) -> str:
    return f"base-{Path(folder).name}"


def version_name(run_id: int) -> str:
    return f"version-{run_id}"


_LOCAL_KEY = secrets.token_urlsafe(24)  # for the servers this process starts when VLLM_API_KEY is not set


def api_key() -> str:
    """The key every server is asked with: ``VLLM_API_KEY``, else one made for this worker process (the
    servers it starts itself ask for it, so another local user cannot use them)."""
    return settings.VLLM_API_KEY or _LOCAL_KEY


def serve_command(folder: str | Path, name: str, port: int) -> list[str]:
    from trainer.core.vllm import server_command

    return server_command(settings.VLLM_PYTHON, folder, name, port, shlex.split(settings.VLLM_ARGS),
                          api_key=api_key())


def serve_hint(folder: str | Path, name: str) -> str:
    """The command that starts a server for ``name`` elsewhere: bound to a private address and asking for the
    key the workers send (a server deserialises the tensors it is sent, so it is never open)."""
    return (f"vllm serve {folder} --served-model-name {name} --enable-prompt-embeds "
            f"--host <its private address> --port <a free port> --api-key \"$VLLM_API_KEY\"")


class ExternalServers:
    """``VLLM_URL`` mode: which of the servers someone else runs serves a model, trusted for FOUND_SECONDS."""

    def __init__(self):
        self._lock = threading.Lock()
        self._found: dict[str, tuple[float, str]] = {}  # model name -> (when, which URL serves it)

    def url(self, name: str, folder) -> str:
        from trainer.core.vllm import VLLMUnavailable, served_models

        with self._lock:
            known = self._found.get(name)
        if known is not None and time.monotonic() - known[0] < FOUND_SECONDS and known[1] in settings.VLLM_URL:
            return known[1]
        problems = []
        for url in settings.VLLM_URL:
            try:
                if name in served_models(url, api_key=api_key()):
                    if known is None or known[1] != url:
                        _publish(name, state="ready", url=url, external=True)
                    with self._lock:
                        self._found[name] = (time.monotonic(), url)
                    return url
                problems.append(f"{url} serves other models")
            except VLLMUnavailable as exc:
                problems.append(f"{url} {exc.reason}")
        reason = (f"no server serves the model {name!r} ({'; '.join(problems)}). Start one where the GPUs are, "
                  f"with that folder copied there: `{serve_hint(folder, name)}`")
        with self._lock:
            self._found.pop(name, None)
        _publish(name, state="failed", url=", ".join(settings.VLLM_URL), error=reason, external=True)
        raise VLLMUnavailable(", ".join(settings.VLLM_URL), reason)


class ServerPool:
    """The servers this worker process starts itself (``VLLM_URL`` empty). One lock guards the pool's
    dictionaries and is never held while a server starts or stops; each model has a gate of its own, so one
    start runs per model however many replies ask at once, and other models' replies go on meanwhile."""

    def __init__(self):
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Lock] = {}
        self._servers: dict[str, LocalServer] = {}
        self._starting: dict[str, _Starting] = {}
        self._failures: dict[str, tuple[float, Exception]] = {}  # model name -> (when, why) its last start failed
        self._stops_at_exit = False

    def url(self, name: str, folder) -> str:
        with self._lock:
            gate = self._gates.setdefault(name, threading.Lock())
        with gate:
            with self._lock:
                server, failed = self._servers.get(name), self._failures.get(name)
            if server is not None and server.proc.poll() is None:
                server.used = time.monotonic()
                return server.url
            if server is not None:
                with self._lock:
                    self._servers.pop(name, None)
                log.warning("vLLM server for %s exited with %s; starting it again", name, server.proc.returncode)
                _stop(name, server.proc)  # its engine's processes may have outlived it
            if failed is not None and time.monotonic() - failed[0] < FAILURE_HOLD_SECONDS:
                raise failed[1]
            try:
                server = self._start(name, folder)
            except Exception as exc:
                with self._lock:
                    self._failures[name] = (time.monotonic(), exc)
                raise
            with self._lock:
                self._failures.pop(name, None)
                self._servers[name] = server
            return server.url

    def stop_all(self) -> None:
        """Stop every server this process started, and make the starts under way give up (the worker's
        shutdown, and at exit)."""
        with self._lock:
            servers = [(s.name, s.proc) for s in self._servers.values()]
            servers += [(n, s.proc) for n, s in self._starting.items() if s.proc is not None]
            for starting in self._starting.values():
                starting.given_up.set()
            self._servers.clear()
        for name, proc in servers:
            _stop(name, proc)

    def _make_room(self, name: str) -> _Starting:
        """Reserve a place for ``name``'s server, stopping the least recently used ones so that at most
        VLLM_MAX_SERVERS run or start (each holds a whole model and its cache; a reply still streaming from an
        evicted one is cut and fails with the message)."""
        with self._lock:
            starting = self._starting[name] = _Starting()
            running = sorted(self._servers.values(), key=lambda s: s.used)
            evict = running[:max(0, len(running) + len(self._starting) - settings.VLLM_MAX_SERVERS)]
            for server in evict:
                self._servers.pop(server.name, None)
            if not self._stops_at_exit:  # registered with the first server, not at import
                atexit.register(self.stop_all)
                self._stops_at_exit = True
        for server in evict:
            log.info("stopping the vLLM server for %s to make room (VLLM_MAX_SERVERS=%s)", server.name,
                     settings.VLLM_MAX_SERVERS)
            _stop(server.name, server.proc)
        return starting

    def _start(self, name: str, folder) -> LocalServer:
        from trainer.core.vllm import VLLMUnavailable

        python = Path(settings.VLLM_PYTHON)
        log_path, pid_path = _paths(name)
        if not python.is_file():
            reason = (f"vLLM's environment is not set up ({python} is missing). Start the product with "
                      "SERVING_BACKEND=vllm ./run.sh (it sets it up), or set VLLM_PYTHON, or VLLM_URL for a server "
                      "elsewhere.")
            _publish(name, state="failed", error=reason, log=str(log_path))
            raise VLLMUnavailable("", reason)
        starting = self._make_room(name)
        try:
            return self._launch(name, folder, starting, log_path, pid_path)
        finally:
            with self._lock:
                self._starting.pop(name, None)

    def _launch(self, name: str, folder, starting: _Starting, log_path: Path, pid_path: Path) -> LocalServer:
        from trainer.core.ports import free_port
        from trainer.core.vllm import VLLMUnavailable

        _stop_orphans()
        port = free_port()
        try:
            command = serve_command(folder, name, port)
        except ValueError as exc:  # VLLM_ARGS asked for something refused (--host)
            _publish(name, state="failed", error=str(exc), log=str(log_path))
            raise VLLMUnavailable("", str(exc)) from exc
        url = f"http://127.0.0.1:{port}"
        _publish(name, state="starting", url=url, log=str(log_path))
        log.info("starting a vLLM server for %s on %s (log %s)", name, url, log_path)
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, env={**os.environ, "VLLM_LOGGING_LEVEL": "INFO"})
        pid_path.write_text(f"{os.getpid()} {proc.pid}\n")
        starting.proc = proc
        deadline = time.monotonic() + settings.VLLM_START_SECONDS
        while True:
            if starting.given_up.is_set():
                what = "was stopped while starting (its worker is shutting down)"
            elif healthy(url):  # /health answers without the key
                break
            elif proc.poll() is not None:
                what = f"exited with {proc.returncode}"
            elif time.monotonic() > deadline:
                what = f"was not ready after {settings.VLLM_START_SECONDS} s (VLLM_START_SECONDS)"
            else:
                time.sleep(0.5)
                continue
            _stop(name, proc)
            reason = f"the server for {name} {what}; its log: {log_path}"
            _publish(name, state="failed", url=url, error=reason, log=str(log_path), tail=_tail(log_path))
            raise VLLMUnavailable(url, reason)
        _publish(name, state="ready", url=url, log=str(log_path), pid=proc.pid)
        return LocalServer(name, str(folder), proc, url, log_path)


EXTERNAL = ExternalServers()
LOCAL = ServerPool()


def locate(name: str, folder: str | Path) -> str:
    """The base URL of a server serving ``name`` (the model in ``folder``); raises VLLMUnavailable."""
    return EXTERNAL.url(name, folder) if settings.VLLM_URL else LOCAL.url(name, folder)


def stop_all() -> None:
    """Stop every server this process started (the worker's shutdown)."""
    LOCAL.stop_all()


def _paths(name: str) -> tuple[Path, Path]:
    data = Path(settings.DATA_DIR)
    (data / "logs").mkdir(parents=True, exist_ok=True)
    (data / "run").mkdir(parents=True, exist_ok=True)
    return data / "logs" / f"vllm-{name}.log", data / "run" / f"vllm-{name}.{os.getpid()}.pid"


def healthy(url: str) -> bool:
    from trainer.core.vllm import healthy

    return healthy(url)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def command_line(pid: int) -> str:
    """The process's command line, its arguments joined by spaces ("" when it is gone or not readable)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _is_worker(pid: int) -> bool:
    """``pid`` is alive and a Python process (a worker); a pid reused by anything else is not the owner."""
    line = command_line(pid)
    return process_alive(pid) and (not line or "python" in line or "celery" in line)


def _is_vllm_server(pid: int) -> bool:
    """``pid`` is alive and runs vLLM: a pid file's number reused by another process is never stopped."""
    return process_alive(pid) and "vllm" in command_line(pid)


def _stop_orphans() -> None:
    """Servers started by workers that are gone (killed: no shutdown to stop them): stop them, forget them.
    A pid file is trusted only as far as the processes' command lines bear it out."""
    for pid_path in (Path(settings.DATA_DIR) / "run").glob("vllm-*.pid"):
        try:
            owner, server = (int(x) for x in pid_path.read_text().split())
        except (OSError, ValueError):
            continue
        if owner == os.getpid() or _is_worker(owner):
            continue
        if _is_vllm_server(server):
            log.warning("stopping vLLM server pid %s left by worker pid %s (%s)", server, owner, pid_path.name)
            _kill_group(server)
        pid_path.unlink(missing_ok=True)
        _publish(pid_path.name.removeprefix("vllm-").rsplit(".", 2)[0], state="stopped")


def _kill_group(pid: int, wait: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left after ``wait`` seconds. ``proc``, when the
    server is this process's child, is reaped as it exits (a zombie would keep the group alive)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    except PermissionError:  # not ours (a pid reused by another user's process): nothing of ours to stop
        log.warning("not stopping process group %s: it belongs to another user", pid)
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _stop(name: str, proc: subprocess.Popen) -> None:
    _kill_group(proc.pid, proc=proc)
    _, pid_path = _paths(name)
    pid_path.unlink(missing_ok=True)
    _publish(name, state="stopped")


def _publish(name: str, **state) -> None:
    from alignment_site.redis_client import client

    state.update(host=socket.gethostname(), worker_pid=os.getpid(), at=time.time())
    try:
        if state.get("state") == "stopped":
            client().hdel(STATE_KEY, name)
        else:
            client().hset(STATE_KEY, name, json.dumps(state))
    except Exception:  # Redis down: the status page says so on its own
        log.exception("could not publish the state of vLLM server %s", name)


def states() -> dict[str, dict]:
    """Model name → its server's last published state (``starting``, ``ready``, ``failed``)."""
    from alignment_site.redis_client import client

    return {k.decode(): json.loads(v) for k, v in client().hgetall(STATE_KEY).items()}
