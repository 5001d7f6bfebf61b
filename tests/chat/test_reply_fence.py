"""Replies never hang and are never overwritten by an attempt that lost them: unloading a version ends every
reply that waited for it with the reason, a relay gives up on a model that never answers, and a Retry racing
the old attempt's last write keeps the new attempt's row and stream."""

import threading
import time

import pytest

from trainer.core.batch_generation import BatchScheduler, EngineClosed, GenerationRequest
from trainer.core.loop import load_base
from trainer.models import TrainingRun
from trainer.worker import serving
from users.conversations.services import reply_retry
from users.models import Conversation, Reply, Turn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def tiny_base(settings, tiny_model_path, test_redis):
    settings.BASE_MODEL = str(tiny_model_path)
    settings.CHAT_TEMPERATURE = 0.0


def queued(user, n: int = 1) -> list[Reply]:
    turn = Turn.objects.create(conversation=Conversation.objects.create(user=user), index=0,
                               user_message="Tell me about tea.")
    return [Reply.objects.create(turn=turn, position=i, source="personal", chosen=i == 0) for i in range(n)]


def drain(request) -> str | None:
    """The request's text, or None when it ended with EngineClosed (queue.Empty if it never ends)."""
    try:
        return "".join(request.stream(timeout=30))
    except EngineClosed:
        return None


def test_closing_a_scheduler_ends_every_request_still_waiting_with_the_reason(tiny_model_path):
    model, tokenizer = load_base(str(tiny_model_path))
    scheduler = BatchScheduler(model, tokenizer, max_batch=1, max_wait=0.0)
    writing = threading.Event()

    def until_closed() -> bool:  # the first reply is held at its first token until close has begun
        writing.set()
        deadline = time.monotonic() + 30
        while not scheduler.closed and time.monotonic() < deadline:
            time.sleep(0.005)
        return False

    requests = [scheduler.submit(GenerationRequest([{"role": "user", "content": f"Story {i}"}], None,
                                                   max_new_tokens=300, temperature=0.0,
                                                   should_stop=until_closed if i == 0 else None))
                for i in range(4)]
    assert writing.wait(30)  # the first is being written; the others wait in the inbox
    scheduler.close()
    texts = [drain(r) for r in requests]  # each ends within 30 s: none waits for good
    assert texts[0] and requests[0].error is None
    assert texts[1:] == [None, None, None]
    assert all(isinstance(r.error, EngineClosed) for r in requests[1:])
    with pytest.raises(EngineClosed):
        scheduler.submit(GenerationRequest([{"role": "user", "content": "late"}], None))


def test_a_third_version_loaded_under_load_fails_the_replies_waiting_for_the_oldest(
        owner, active_run, settings, staff):
    settings.GENERATE_BATCH_SIZE = 1
    settings.CHAT_MAX_NEW_TOKENS = 200
    serving.VERSIONS.clear()
    replies = queued(owner, 4)
    statuses = {}

    def write(reply):
        statuses[reply.pk] = serving.generate_reply(reply.pk, worker="generate@test")

    threads = [threading.Thread(target=write, args=(r,)) for r in replies]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while Reply.objects.filter(status=Reply.Status.STREAMING).count() < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # one is being written, three wait in the version's batcher
    for name in ("second", "third"):  # two newer versions load: the oldest is closed
        newer = TrainingRun.objects.create(name=name, created_by=staff, status=TrainingRun.Status.COMPLETED,
                                           config=active_run.config, artifacts=active_run.artifacts)
        serving.served_run(newer.pk, newer.artifacts)
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads)
    rows = {r.pk: r for r in Reply.objects.filter(pk__in=[r.pk for r in replies])}
    failed = [r for r in rows.values() if r.status == Reply.Status.FAILED]
    assert failed and all("unloaded to make room for a newer one" in r.error for r in failed)
    assert all(r.status in (Reply.Status.DONE, Reply.Status.FAILED) for r in rows.values())
    serving.VERSIONS.clear()


def test_a_reply_on_the_active_version_is_written_while_another_version_loads(owner, active_run, settings, staff,
                                                                             monkeypatch):
    settings.CHAT_MAX_NEW_TOKENS = 8
    serving.VERSIONS.clear()
    serving.served_run(active_run.pk, active_run.artifacts)
    other = TrainingRun.objects.create(name="other", created_by=staff, status=TrainingRun.Status.COMPLETED,
                                       config=active_run.config, artifacts=active_run.artifacts)
    loading, answered = threading.Event(), threading.Event()
    real_load = serving._served_here

    def held_load(run_id, path, base):
        if run_id == other.pk:
            loading.set()
            answered.wait(timeout=90)  # held until the active version's reply is written (a slow disk, a big model)
        return real_load(run_id, path, base)

    monkeypatch.setattr(serving, "_served_here", held_load)
    loader = threading.Thread(target=serving.served_run, args=(other.pk, other.artifacts))
    loader.start()
    assert loading.wait(timeout=60)
    (reply,) = queued(owner)
    assert serving.generate_reply(reply.pk, worker="generate@test") == Reply.Status.DONE
    still_loading = loader.is_alive()
    answered.set()
    loader.join(timeout=90)
    assert still_loading, "the reply waited for the other version's load"
    assert other.pk in serving.VERSIONS and Reply.objects.get(pk=reply.pk).serving["version"] == active_run.pk
    serving.VERSIONS.clear()


def test_a_retry_racing_the_old_attempts_last_write_keeps_the_new_attempt(owner, active_run, settings,
                                                                           monkeypatch):
    settings.CHAT_MAX_NEW_TOKENS = 8
    (reply,) = queued(owner)
    old_key = Reply.objects.get(pk=reply.pk).stream_key
    real_relay = serving._relay

    def relay_then_lose(request, row, redis_client, parts, claim=None):
        stopped = real_relay(request, row, redis_client, parts, claim)
        # Just before the old attempt's last write: bookkeeping fails the reply, its owner presses Retry.
        Reply.objects.filter(pk=row.pk).update(status=Reply.Status.FAILED, error="stalled")
        reply_retry(reply=Reply.objects.get(pk=row.pk))
        return stopped

    monkeypatch.setattr(serving, "_relay", relay_then_lose)
    assert serving.generate_reply(reply.pk, worker="generate@old") == "superseded"
    row = Reply.objects.get(pk=reply.pk)
    assert (row.status, row.content, row.error) == (Reply.Status.QUEUED, "", "")
    assert row.stream_key != old_key  # the new attempt streams under a key of its own
    monkeypatch.setattr(serving, "_relay", real_relay)
    assert serving.generate_reply(reply.pk, worker="generate@new") == Reply.Status.DONE
    row.refresh_from_db()
    assert row.worker == "generate@new" and row.content


def test_a_relay_whose_model_never_answers_gives_up_after_the_deadline(owner, settings, test_redis):
    settings.REPLY_MAX_SECONDS = 1
    (reply,) = queued(owner)
    request = GenerationRequest([{"role": "user", "content": "hi"}], None)  # never submitted: nobody answers
    with pytest.raises(serving.ReplyTimeout, match="REPLY_MAX_SECONDS"):
        serving._relay(request, reply, test_redis, [])
    assert request.cancelled


def test_a_stopped_reply_whose_model_never_acknowledges_ends_as_stopped_after_the_grace(owner, test_redis,
                                                                                        monkeypatch):
    monkeypatch.setattr(serving, "STOP_GRACE_SECONDS", 0.5)
    (reply,) = queued(owner)
    request = GenerationRequest([{"role": "user", "content": "hi"}], None)  # never submitted: nobody answers
    request.deltas.put("Half a sen")
    test_redis.set(reply.stop_key, 1)
    started = time.monotonic()
    assert serving._relay(request, reply, test_redis, parts := []) is True  # stopped, not failed, not hanging
    assert request.cancelled and parts == ["Half a sen"] and time.monotonic() - started < 30


def test_a_reply_keeps_its_heartbeat_while_its_version_loads(owner, active_run, settings, monkeypatch):
    """Loading a version can take minutes: bookkeeping must not take the reply for stalled meanwhile."""
    from trainer.worker import reply_claim

    settings.CHAT_MAX_NEW_TOKENS = 4
    monkeypatch.setattr(reply_claim, "HEARTBEAT_SECONDS", 0.2)
    serving.VERSIONS.clear()
    (reply,) = queued(owner)
    beats = []
    real_load = serving._served_here

    def slow_load(run_id, path, base):  # a slow disk: the beats are read while the load holds this thread
        for _ in range(3):
            time.sleep(0.6)
            beats.append(Reply.objects.get(pk=reply.pk).heartbeat_at)
        return real_load(run_id, path, base)

    monkeypatch.setattr(serving, "_served_here", slow_load)
    assert serving.generate_reply(reply.pk, worker="generate@test") == Reply.Status.DONE
    assert None not in beats and beats[0] < beats[1] < beats[2]  # touched by the heartbeat thread, not this one
    serving.VERSIONS.clear()
