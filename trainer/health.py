"""Checks behind the staff status page: each returns (ok, detail, fix)."""

from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import connection

from alignment_site.celery import app
from trainer.core import provision

QUEUES = ("generate", "train")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


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
            "Redis", False, f"{settings.REDIS_URL}: {exc}",
            "Start Redis (`redis-server --daemonize yes`) or point REDIS_URL at a running one. "
            "Messages are kept meanwhile, but no reply can be generated.",
        )
    return Check("Redis", True, f"{settings.REDIS_URL} (Redis {info.get('redis_version')})")


def workers_by_queue(timeout: float = 1.0) -> dict[str, list[str]]:
    """Worker names listening on each queue; empty lists when none answer."""
    found: dict[str, list[str]] = {q: [] for q in QUEUES}
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    for worker, queues in replies.items():
        for queue in queues:
            found.setdefault(queue["name"], []).append(worker)
    found["train"] += busy_training()  # a solo train worker busy with a run answers no ping
    return found


def busy_training() -> list[str]:
    """"<worker> (run <id>)" for each run being trained now: a solo train worker busy with a run answers
    no ping, yet it is there (its run's heartbeat is fresh, or the reaper would have failed the run)."""
    from trainer.models import TrainingRun

    running = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING).values_list("worker", "pk")
    return [f"{worker or 'a worker'} (busy with run {pk})" for worker, pk in running]


def check_workers(redis_ok: bool) -> list[Check]:
    if not redis_ok:
        return [Check(f"Workers on `{q}`", False, "unknown: Redis is down", "Start Redis first.") for q in QUEUES]
    try:
        found = workers_by_queue()
    except Exception as exc:
        return [Check("Workers", False, str(exc), "Check REDIS_URL.")]
    commands = {
        "generate": "celery -A alignment_site worker -Q generate -c 1 -n generate@%h",
        "train": "celery -A alignment_site worker -Q train -c 1 -n train@%h",
    }
    return [
        Check(f"Workers on `{q}`", bool(found.get(q)), ", ".join(found.get(q, [])) or "none listening",
              "" if found.get(q) else f"Start one: `{commands[q]}` (run.sh starts both).")
        for q in QUEUES
    ]


def check_model() -> Check:
    try:
        location = provision.resolve(settings.BASE_MODEL, settings.DATA_DIR)
    except provision.ProvisionError as exc:
        return Check("Base model", False, str(exc), "Run `python manage.py provision_model`.")
    return Check("Base model", True, f"{location.name} at {location.path}")


def all_checks() -> list[Check]:
    redis_check = check_redis()
    return [check_database(), redis_check, *check_workers(redis_check.ok), check_model()]
