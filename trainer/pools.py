"""A version's onboarding pool, from the web's side: asked for when a version with vectors is activated (and again
from its run page after a failure), prepared by a task on the train queue (``trainer.worker.onboarding``), failed
by bookkeeping when its worker falls silent, and read by the newcomer's pages."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.db import transaction

from alignment_site import dispatch
from trainer.models import OnboardingPool, TrainingRun, fail_silent

POOL_TASK = "trainer.prepare_onboarding"


class PoolStateError(Exception):
    pass


def pool_request(*, run: TrainingRun) -> OnboardingPool | None:
    """Queue the preparation of ``run``'s pool unless it is ready or being prepared; None for a version without
    vectors. A failed pool is asked for again."""
    if not run.has_vectors or run.status != TrainingRun.Status.COMPLETED or not run.artifacts:
        return None
    with transaction.atomic():
        pool, created = OnboardingPool.objects.select_for_update().get_or_create(run=run)
        if not created:
            if pool.status == OnboardingPool.Status.RUNNING:
                raise PoolStateError("The onboarding pool is being prepared: wait for it to finish.")
            if pool.status == OnboardingPool.Status.COMPLETED:
                return pool
            OnboardingPool.objects.filter(pk=pool.pk).update(status=OnboardingPool.Status.QUEUED, error="",
                                                             done=0, total=0, finished_at=None)
        transaction.on_commit(lambda: _send(pool.pk))
    pool.refresh_from_db()
    return pool


def _send(pool_id: int) -> bool:
    return dispatch.enqueue_row(
        POOL_TASK, OnboardingPool, pool_id, queue="train",
        reason="Redis (the broker) was not reachable, so no worker was asked to prepare the pool. Start Redis, "
               "then prepare it again from the run page.")


def pools_reap_stale() -> int:
    """Fail pools whose worker fell silent (every worker's bookkeeping calls this): the version can ask again."""
    return fail_silent(OnboardingPool, again="Prepare the pool again from the run page.")


def ready_pool(run_id: int) -> OnboardingPool | None:
    return OnboardingPool.objects.filter(run_id=run_id, status=OnboardingPool.Status.COMPLETED).first()


def pool_document(pool: OnboardingPool) -> dict:
    """The pool's questions, spread and map axes (read once per process and pool)."""
    return _read(str(settings.ARTIFACTS_DIR / pool.path / "pool.json"), pool.finished_at.timestamp())


@lru_cache(maxsize=8)
def _read(path: str, stamp: float) -> dict:
    return json.loads(Path(path).read_text())
