"""Replies and real Celery workers: a busy worker's replies are never failed as stalled, and a killed
worker's half-written reply is failed with its text kept — by the restarted worker at once, or by any
other worker's periodic bookkeeping — without a browser watching."""

import math
import signal
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from celery import Celery

from tests.services import celery_worker_cmd, running, service_env, wait_until, worker_ready
from users.models import Conversation, Reply, Turn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
MOST_THREADS = 64


@pytest.fixture
def own_redis():
    """A Redis database of these tests' own: the session's generate worker must not take their replies."""
    from django.conf import settings

    parts = urlsplit(settings.REDIS_URL)
    url = urlunsplit(parts._replace(path=f"/{(int(parts.path.strip('/') or 0) + 5) % 16}"))
    redis.Redis.from_url(url).flushdb()
    return url


def generate_worker(model, workdir, name, redis_url, threads: int = 8, **extra):
    env = service_env(model, workdir, REDIS_URL=redis_url, **extra)
    log = workdir / f"{name.split('@')[0]}-{time.monotonic_ns()}.log"
    return running(celery_worker_cmd("generate", name, threads=threads), env, log, worker_ready(log, name),
                   timeout=120)


def queue_replies(owner, redis_url, n):
    conversation = Conversation.objects.create(user=owner)
    replies = []
    for i in range(n):
        turn = Turn.objects.create(conversation=conversation, index=i,
                                   user_message=f"Write a detailed 500-word essay on bread's history, part {i + 1}.")
        replies.append(Reply.objects.create(turn=turn, source="base", chosen=True))
    app = Celery(broker=redis_url)
    for reply in replies:
        app.send_task("trainer.generate_reply", args=[reply.pk], queue="generate")
    return replies


def status(reply):
    reply.refresh_from_db()
    return reply.status


STALL_SECONDS = 15  # REPLY_STALL_SECONDS's least


def test_replies_waiting_behind_others_in_a_busy_worker_are_not_failed(owner, bundled_model_path, tmp_path,
                                                                      own_redis):
    # One reply per forward pass: the last of n claimed replies waits n - 1 replies' time after its claim. n is
    # worked out from this machine's speed, so that the wait is twice the stall limit however fast it is.
    with generate_worker(bundled_model_path, tmp_path, "generate-busy@localhost", own_redis, threads=MOST_THREADS,
                         GENERATE_BATCH_SIZE="1", CHAT_MAX_NEW_TOKENS="128", CHAT_TEMPERATURE="0",
                         REPLY_STALL_SECONDS=str(STALL_SECONDS), BOOKKEEPING_SECONDS="1"):
        for _ in range(2):  # the second one, once the model is warm, times one reply
            (timed,) = queue_replies(owner, own_redis, 1)
            wait_until(lambda: status(timed) in Reply.FINISHED, timeout=240)
        one = (timed.finished_at - timed.started_at).total_seconds()
        n = min(MOST_THREADS, max(8, math.ceil(2 * STALL_SECONDS / one) + 1))
        replies = queue_replies(owner, own_redis, n)
        wait_until(lambda: all(status(r) in Reply.FINISHED for r in replies), timeout=60 + 2 * n * one)
    assert [r.status for r in replies] == [Reply.Status.DONE] * n, [r.error for r in replies]
    assert all(r.error == "" for r in replies)
    longest = max((r.finished_at - r.started_at).total_seconds() for r in replies)
    assert longest > STALL_SECONDS, (one, n)  # some reply was claimed and kept waiting longer than the stall limit


def test_a_killed_workers_reply_is_failed_with_its_text_by_another_workers_bookkeeping(owner, bundled_model_path,
                                                                                      tmp_path, own_redis):
    client = redis.Redis.from_url(own_redis)
    with generate_worker(bundled_model_path, tmp_path, "generate-victim@localhost", own_redis,
                         CHAT_MAX_NEW_TOKENS="400") as proc:
        (reply,) = queue_replies(owner, own_redis, 1)
        wait_until(lambda: status(reply) == Reply.Status.STREAMING and client.xlen(reply.stream_key) >= 8)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    streamed = "".join(f[b"t"].decode() for _, f in client.xrange(reply.stream_key) if b"t" in f)
    assert status(reply) == Reply.Status.STREAMING  # nobody has noticed yet
    with generate_worker(bundled_model_path, tmp_path, "generate-other@localhost", own_redis,
                         REPLY_STALL_SECONDS="15", BOOKKEEPING_SECONDS="1"):
        wait_until(lambda: status(reply) == Reply.Status.FAILED, timeout=60)
    assert reply.content == streamed and len(streamed) > 0
    assert "stopped answering" in reply.error and "Press Retry" in reply.error


def test_a_restarted_worker_fails_what_its_previous_process_was_writing_at_once(owner, bundled_model_path, tmp_path,
                                                                               own_redis):
    client = redis.Redis.from_url(own_redis)
    name = "generate-phoenix@localhost"
    with generate_worker(bundled_model_path, tmp_path, name, own_redis, CHAT_MAX_NEW_TOKENS="400") as proc:
        (reply,) = queue_replies(owner, own_redis, 1)
        wait_until(lambda: status(reply) == Reply.Status.STREAMING and client.xlen(reply.stream_key) >= 8)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert reply.worker == name
    with generate_worker(bundled_model_path, tmp_path, name, own_redis):
        assert status(reply) == Reply.Status.FAILED  # done before the worker said it was ready
    assert "restarted while writing this reply" in reply.error and reply.content
