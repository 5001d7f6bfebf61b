"""Rows nobody would finish are failed by bookkeeping with the reason: a refit whose worker died, and a queued
reply or refit whose request the broker lost (Redis restarted)."""

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from alignment_site import dispatch
from trainer.worker import refit
from users.chat.services import FAST_FIT_TASK, fastfit_maybe_enqueue, fits_reap_stale
from users.conversations.services import GENERATE_TASK, replies_reap_lost
from users.models import Conversation, Reply, Turn, VectorFit

QUEUE = "reaping-test"  # no worker listens here: what is published stays


@pytest.fixture
def broker(test_redis, settings):
    settings.GENERATE_QUEUE = QUEUE
    settings.QUEUED_LOST_SECONDS = 1

    def clean():
        test_redis.delete(QUEUE, f"lost-since:{GENERATE_TASK}", f"lost-since:{FAST_FIT_TASK}")
        for field, value in test_redis.hgetall(dispatch.UNACKED).items():
            if json.loads(value)[2] == QUEUE:
                test_redis.hdel(dispatch.UNACKED, field)

    clean()
    yield test_redis
    clean()


def _queued(owner, n: int) -> list[Reply]:
    turn = Turn.objects.create(conversation=Conversation.objects.create(user=owner), index=0, user_message="Hi")
    return [Reply.objects.create(turn=turn, position=i, status=Reply.Status.QUEUED) for i in range(n)]


def test_a_queued_reply_whose_request_the_broker_lost_is_failed_and_the_others_wait(owner, broker):
    waiting, taken, lost = _queued(owner, 3)
    dispatch.send(GENERATE_TASK, waiting.pk, queue=QUEUE)  # in the queue's list
    message = json.loads(broker.lindex(QUEUE, 0))
    broker.hset(dispatch.UNACKED, "tag-reaping-test", json.dumps([{**message, "headers": {
        **message["headers"], "argsrepr": f"[{taken.pk}]"}}, "", QUEUE]))  # taken by a worker, not yet acked
    assert dispatch.queued_row_ids(GENERATE_TASK, QUEUE) >= {waiting.pk, taken.pk}
    assert replies_reap_lost() == 0  # the first look only notes what is missing
    time.sleep(1.2)
    assert replies_reap_lost() == 1
    statuses = dict(Reply.objects.filter(turn=waiting.turn).values_list("pk", "status"))
    assert statuses == {waiting.pk: "queued", taken.pk: "queued", lost.pk: "failed"}
    assert "Press Retry" in Reply.objects.get(pk=lost.pk).error
    broker.delete(QUEUE)  # Redis restarted: the waiting request is gone too
    replies_reap_lost()
    time.sleep(1.2)
    assert replies_reap_lost() == 1 and Reply.objects.get(pk=waiting.pk).status == "failed"


def test_a_reply_found_again_between_two_looks_is_not_failed(owner, broker):
    (reply,) = _queued(owner, 1)
    assert replies_reap_lost() == 0  # missing (its request not published yet)
    dispatch.send(GENERATE_TASK, reply.pk, queue=QUEUE)
    time.sleep(1.2)
    assert replies_reap_lost() == 0 and Reply.objects.get(pk=reply.pk).status == "queued"


def test_a_refit_whose_worker_died_is_failed_and_the_person_may_refit_again(owner, active_run, settings, broker):
    from tests.factories import rated_conversations

    settings.FASTFIT_EVERY_PAIRS = 1
    rated_conversations(owner, n=2)
    killed = VectorFit.objects.create(user=owner, run=active_run, pairs_total=2, status=VectorFit.Status.RUNNING,
                                      worker="train@gone", started_at=timezone.now())
    assert fastfit_maybe_enqueue(user=owner) is None  # refused while that one "runs"
    assert fits_reap_stale(worker="train@other") == 0
    assert fits_reap_stale(worker="train@gone") == 1
    killed.refresh_from_db()
    assert killed.status == "failed" and "restarted" in killed.error
    stalled = VectorFit.objects.create(user=owner, run=active_run, pairs_total=2, status=VectorFit.Status.RUNNING,
                                       worker="train@x", started_at=timezone.now() - timedelta(hours=1))
    assert fits_reap_stale() == 1
    stalled.refresh_from_db()
    assert stalled.status == "failed" and "did not finish" in stalled.error
    assert fastfit_maybe_enqueue(user=owner) is not None  # asked again, and accepted


def test_a_refit_failed_by_bookkeeping_stays_failed_when_its_worker_writes_late(owner, active_run, monkeypatch):
    fit = VectorFit.objects.create(user=owner, run=active_run, pairs_total=2)

    def slow_fit(row):  # bookkeeping fails the fit while the worker is still fitting
        VectorFit.objects.filter(pk=row.pk).update(status=VectorFit.Status.FAILED, error="reaped")
        return 2, 1.0, [1.0, 0.5], {}  # no onboarding vectors to rank against

    monkeypatch.setattr(refit, "_fit", slow_fit)
    assert refit.vectors_refit(fit.pk, worker="train@late") == "superseded"
    fit.refresh_from_db()
    assert (fit.status, fit.error, fit.worker) == ("failed", "reaped", "train@late")
