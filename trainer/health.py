"""Checks behind the staff status page: each returns (ok, detail, fix)."""

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from django.db import connection

from alignment_site.celery import app
from trainer.core import provision


def queue_names() -> tuple[str, str]:
    return (settings.GENERATE_QUEUE, "train")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def redacted(url: str) -> str:
    """``url`` as a page may show it: a password in it (``redis://:secret@host``) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_database() -> Check:
    vendor = connection.vendor
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error is a red light with its text
        return Check("Database", False, f"{vendor}: {exc}", "Check DATABASE_URL and that the database server runs.")
    return Check("Database", True, f"{vendor} ({connection.settings_dict['NAME']})")


def check_redis() -> Check:
    try:
        info = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2).info("server")
    except redis.RedisError as exc:
        return Check(
            "Redis", False, f"{redacted(settings.REDIS_URL)}: {exc}",
            "Start Redis (`redis-server --daemonize yes`) or point REDIS_URL at a running one. "
            "Messages are kept meanwhile, but no reply can be generated.",
        )
    return Check("Redis", True, f"{redacted(settings.REDIS_URL)} (Redis {info.get('redis_version')})")


def worker_command(queue: str) -> str:
    """How to start a worker on ``queue``: the command run.sh runs, so a worker has the same name
    (``train@<host>``) whoever started it."""
    if queue == "train":
        return "celery -A alignment_site worker -Q train -c 1 --pool solo -n train@%h"
    return f"celery -A alignment_site worker -Q {queue} -c 8 --pool threads -n generate@%h"


def workers_by_queue(timeout: float = 1.0) -> dict[str, list[str]]:
    """Worker names listening on each queue; empty lists when none answer."""
    found: dict[str, list[str]] = {q: [] for q in queue_names()}
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    for worker, queues in replies.items():
        for queue in queues:
            found.setdefault(queue["name"], []).append(worker)
    # A solo train worker busy with a run answers no ping, yet it is there (its run's heartbeat is fresh, or the
    # reaper would have failed the run): listed under its own name, saying which run it trains.
    busy = busy_training()
    found["train"] = [w for w in found["train"] if w not in busy] + [
        f"{worker} (busy with run {run_id})" for worker, run_id in busy.items()]
    return found


def busy_training() -> dict[str, int]:
    """The worker training each run being trained now (the name it recorded: its Celery name), and that run."""
    from trainer.models import TrainingRun

    running = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING).values_list("worker", "pk")
    return {worker or f"a worker of run {pk}": pk for worker, pk in running}


def check_workers(redis_ok: bool) -> list[Check]:
    if not redis_ok:
        return [Check(f"Workers on `{q}`", False, "unknown: Redis is down", "Start Redis first.")
                for q in queue_names()]
    try:
        found = workers_by_queue()
    except Exception as exc:
        return [Check("Workers", False, str(exc), "Check REDIS_URL.")]
    return [
        Check(f"Workers on `{q}`", bool(found.get(q)), ", ".join(found.get(q, [])) or "none listening",
              "" if found.get(q) else f"Start one: `{worker_command(q)}` (run.sh starts both).")
        for q in queue_names()
    ]


def check_model() -> Check:
    try:
        location = provision.resolve(settings.BASE_MODEL, settings.DATA_DIR)
    except provision.ProvisionError as exc:
        return Check("Base model", False, str(exc), "Run `python manage.py provision_model`.")
    return Check("Base model", True, f"{location.name} at {location.path}")


def check_vllm(redis_ok: bool) -> list[Check]:
    """With SERVING_BACKEND=vllm: the servers in VLLM_URL answer; or, when the generate worker starts its own,
    its environment exists and no server it started has failed."""
    from trainer.worker import vllm

    if settings.SERVING_BACKEND != "vllm":
        return []
    if settings.VLLM_URL:
        checks = []
        from trainer.core.vllm import answers_without_key

        for url in settings.VLLM_URL:
            ok = vllm.healthy(url)
            if ok and answers_without_key(url):
                checks.append(Check(f"vLLM server {redacted(url)}", False, "answers without asking for a key: "
                                    "whoever reaches it gets free inference and sends it tensors to unpickle",
                                    "Restart it with `--api-key <key>` on a private address and set VLLM_API_KEY "
                                    "to the same key."))
                continue
            checks.append(Check(f"vLLM server {redacted(url)}", ok, "answers, and asks for the key" if ok else
                                "does not answer",
                                "" if ok else "Start it on its machine (`vllm serve <model folder> --served-model-name "
                                "<name> --enable-prompt-embeds --api-key <key>`; names are on the replies that "
                                "failed) or fix VLLM_URL."))
        return checks
    if not settings.VLLM_PYTHON.is_file():
        return [Check("vLLM environment", False, f"{settings.VLLM_PYTHON} is missing",
                      "Start the product with SERVING_BACKEND=vllm ./run.sh (it sets vLLM up, about 2 minutes "
                      "once), or set VLLM_PYTHON or VLLM_URL.")]
    checks = [Check("vLLM environment", True, str(settings.VLLM_PYTHON))]
    if not redis_ok:
        return checks
    for name, state in sorted(vllm.states().items()):
        if _stale(state):
            continue
        detail = f"{state.get('state')} at {state.get('url', '?')} (on {state.get('host', '?')})"
        if state.get("state") == "failed":
            checks.append(Check(f"vLLM server for {name}", False, state.get("error", detail),
                                f"Read its log ({state.get('log', 'DATA_DIR/logs')}), fix the cause (memory: "
                                "VLLM_ARGS' --kv-cache-memory-bytes; a missing environment: ./run.sh), then send a "
                                "message: the generate worker starts it again."))
        elif (state.get("state") == "ready" and state.get("host") == socket.gethostname() and state.get("url")
              and not vllm.healthy(state["url"])):
            checks.append(Check(f"vLLM server for {name}", False, f"{detail}: no longer answers",
                                "Its generate worker starts it again on the next reply; if that fails, see "
                                f"{state.get('log', 'its log')}."))
        else:
            checks.append(Check(f"vLLM server for {name}", True, detail))
    return checks


def _stale(state: dict) -> bool:
    """A server state nobody stands behind: its worker on this machine is gone, or a failure long past (a
    model that is asked for again publishes afresh)."""
    import time

    from trainer.worker.vllm import process_alive

    if state.get("state") == "failed" and time.time() - state.get("at", 0) > 15 * 60:
        return True
    pid = state.get("worker_pid")
    return bool(state.get("host") == socket.gethostname() and pid and not process_alive(int(pid)))


def all_checks() -> list[Check]:
    redis_check = check_redis()
    return [check_database(), redis_check, *check_workers(redis_check.ok), check_model(),
            *check_vllm(redis_check.ok)]
