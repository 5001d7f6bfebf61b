"""The generation worker's side: load models once per process, stream a
reply's tokens into Redis, and save the finished text in the database.

Which model answers is decided per reply, from its source:

- ``personal``: the active version (LoRA merged into the weights) with the
  person's own vectors: their newest fast-fit vectors for that version, else
  the vectors they got in training, else the generic ones. Without an active
  version, the base model.
- ``generic``: the active version with the generic vectors (id 0).
- ``base`` and the collection sources: the base model, no vectors.
- ``compare-*``: the same three, for the blind comparison page.

The active version is one small query per reply, so an activation or a refit
takes effect on the next reply without a restart. Each loaded model has a
``BatchScheduler`` thread: with a threads pool (``-P threads -c 8``) replies
of different people that arrive together share one forward pass; with the
solo pool every batch has one request and chat works as before.

With ``SERVING_BACKEND=vllm`` the same plan answers through a vLLM server
instead (``trainer.core.vllm``): the version's merged model there, the
person's vectors sent with each request as prompt embeddings.
"""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from alignment_site.redis_client import client
from trainer.core import provision
from trainer.selectors import active_version
from trainer.worker.loaded import LoadOnce
from trainer.worker.patience import patiently
from trainer.worker.reply_claim import HEARTBEAT_SECONDS, ReplyClaim, ReplyLost, beating
from trainer.worker.vectors import fitted_vectors, onboarding_vectors
from users.conversations import services, streams
from users.models import Reply

log = logging.getLogger(__name__)

KEEP_RUNS = 2  # versions kept in memory: the active one and the one before (rollback is instant)
STOP_POLL_SECONDS = 0.25
STOP_GRACE_SECONDS = 30  # a stopped reply whose model has not ended it by then ends as stopped anyway


@dataclass
class ServedRun:
    run_id: int
    name: str
    tokenizer: object
    scheduler: object  # BatchScheduler (hf) or VLLMEngine (vllm): submit(request), deltas
    user_model: object  # None for a plain-DPO version
    user_index: object
    fitted: LoadOnce = field(default_factory=LoadOnce)  # VectorFit id -> its (T, H) tensor; the onboarding basis

    def soft_prompt(self, user_id: str | None):
        """(T, H) vectors of a person in training (the generic ones for anyone else); None for plain DPO."""
        from trainer.core.artifacts import soft_prompt

        return soft_prompt(self.user_model, self.user_index, user_id)


@dataclass
class Plan:
    scheduler: object
    name: str
    soft_prompt: object  # (T, H) tensor or None
    record: dict  # what Reply.serving stores


# What this process has loaded. Model path -> (model, tokenizer, name):
TRANSFORMERS_MODELS: LoadOnce[tuple] = LoadOnce()
# (model path, backend) -> (tokenizer, name, scheduler) answering with the base model:
BASES: LoadOnce[tuple] = LoadOnce(drop=lambda base: base[2].close())
# Run id -> the version's served model and vectors:
VERSIONS: LoadOnce[ServedRun] = LoadOnce(keep=KEEP_RUNS, drop=lambda served: served.scheduler.close())


def _scheduler(model, tokenizer, name: str):
    from trainer.core.batch_generation import BatchScheduler

    return BatchScheduler(model, tokenizer, max_batch=settings.GENERATE_BATCH_SIZE,
                          max_wait=settings.GENERATE_BATCH_WAIT_MS / 1000, name=f"batcher-{name}")


def _vllm_engine(folder: Path, model_name: str, label: str):
    """A VLLMEngine for the model in ``folder``, served as ``model_name`` (started on first request)."""
    from functools import partial

    from transformers import AutoTokenizer

    from trainer.core.artifacts import input_embedding
    from trainer.core.vllm import VLLMEngine
    from trainer.worker import vllm

    tokenizer = AutoTokenizer.from_pretrained(folder)
    engine = VLLMEngine(partial(vllm.locate, folder=folder), model_name, tokenizer, input_embedding(folder),
                        name=label, api_key=vllm.api_key())
    return tokenizer, engine


def load_base_model():
    """(model, tokenizer, name) of BASE_MODEL in transformers, loaded on first use and kept for the process
    (the collection's simulated people and anything else that needs the model itself, whatever the backend)."""
    location = provision.resolve(settings.BASE_MODEL, settings.DATA_DIR)

    def load():
        from trainer.core.loop import load_base

        started = time.perf_counter()
        model, tokenizer = load_base(str(location.path))
        model.eval()
        log.info("loaded %s in %.1f s", location.name, time.perf_counter() - started)
        return model, tokenizer, location.name

    return TRANSFORMERS_MODELS.get(str(location.path), load)


def local_base_model() -> str:
    """This machine's ``BASE_MODEL`` as a loadable path."""
    return str(provision.resolve(settings.BASE_MODEL, settings.DATA_DIR).path)


def served_base() -> tuple:
    """(tokenizer, name, scheduler) answering with the base model on the configured backend."""
    location = provision.resolve(settings.BASE_MODEL, settings.DATA_DIR)

    def load():
        if settings.SERVING_BACKEND == "vllm":
            from trainer.worker import vllm

            tokenizer, engine = _vllm_engine(location.path, vllm.base_name(location.path), "vllm-base")
            return tokenizer, location.name, engine
        model, tokenizer, name = load_base_model()
        return tokenizer, name, _scheduler(model, tokenizer, "base")

    return BASES.get((str(location.path), settings.SERVING_BACKEND), load)


def served_run(run_id: int, artifacts: str) -> ServedRun:
    """The version's served model, loaded once per process (other versions' replies go on meanwhile); the
    oldest beyond KEEP_RUNS is dropped."""

    def load() -> ServedRun:
        from trainer.core.artifacts import base_model_here

        path = settings.ARTIFACTS_DIR / artifacts
        base = base_model_here(path, local_base_model)  # trained on another machine: this one's BASE_MODEL
        started = time.perf_counter()
        served = (_served_by_vllm if settings.SERVING_BACKEND == "vllm" else _served_here)(run_id, path, base)
        log.info("loaded version %s in %.1f s", run_id, time.perf_counter() - started)
        return served

    return VERSIONS.get(run_id, load)


def _served_here(run_id: int, path: Path, base: str) -> ServedRun:
    from trainer.core.artifacts import load_run

    loaded = load_run(path, base_model=base, merge=True)
    return ServedRun(run_id, f"run {run_id} ({Path(base).name})", loaded.tokenizer,
                     _scheduler(loaded.model.lm, loaded.tokenizer, f"run{run_id}"), loaded.model.user_model,
                     loaded.user_index)


def _served_by_vllm(run_id: int, path: Path, base: str) -> ServedRun:
    """The version's merged folder (written now if activation did not already) on a vLLM server; its vectors
    stay here and travel with each request."""
    from trainer.core.artifacts import load_user_index, load_user_model, write_merged
    from trainer.worker import vllm

    merged = write_merged(path, base)
    tokenizer, engine = _vllm_engine(merged, vllm.version_name(run_id), f"vllm-run{run_id}")
    return ServedRun(run_id, f"run {run_id} ({Path(base).name}, vLLM)", tokenizer, engine, load_user_model(path),
                     load_user_index(path))


def prepare_version(run_id: int | None) -> str:
    """Get a version (or, for None, the base model) ready to answer on this worker's backend before the first
    reply needs it: on vLLM, write its merged folder and start (or find) its server."""
    from trainer.models import TrainingRun

    if run_id is None:
        _, name, scheduler = served_base()
    else:
        run = TrainingRun.objects.filter(pk=run_id).only("artifacts").first()
        if run is None or not run.artifacts:
            return "no such version"
        served = served_run(run_id, run.artifacts)
        name, scheduler = served.name, served.scheduler
    if settings.SERVING_BACKEND == "vllm":
        scheduler.locate(scheduler.model)
    return f"ready: {name}"


def reply_plan(reply: Reply) -> Plan:
    """Which model and vectors answer this reply, and what to record about it."""
    from users.prism.ids import exported_user_id

    source = reply.source.removeprefix("compare-")  # comparison columns answer like chat
    active = active_version() if source in ("personal", "generic") else None
    backend = {"backend": settings.SERVING_BACKEND}
    if active is None:
        _, name, scheduler = served_base()
        return Plan(scheduler, name, None, {"version": None, "vectors": "none", **backend})
    served = served_run(*active)
    record = {"version": served.run_id, **backend}
    soft = None
    if served.user_model is None:  # a plain-DPO version has no vectors at all
        record["vectors"] = "none"
    elif source == "generic":
        soft, record["vectors"] = served.soft_prompt(None), "generic"
    else:
        user = reply.turn.conversation.user
        fitted = fitted_vectors(served, user.pk)
        user_id = exported_user_id(user, getattr(user, "profile", None))
        if fitted is not None:
            record["fit"], soft = fitted
            record["vectors"] = "fitted"
        elif user_id in served.user_index:
            soft, record["vectors"] = served.soft_prompt(user_id), "personal"
        elif (placed := onboarding_vectors(served.run_id, user.pk, served.soft_prompt(None), served.fitted)):
            soft, record["answers"] = placed
            record["vectors"] = "onboarding"
        else:
            soft, record["vectors"] = served.soft_prompt(None), "generic"
    return Plan(served.scheduler, served.name, soft, record)


def generate_reply(reply_id: int, worker: str = "") -> str:
    """Produce one reply. A second delivery of the same task finds it claimed and does nothing.

    ``worker`` (the Celery node name) is recorded with the claim, and the reply's heartbeat is touched
    every few seconds while its version loads, while it waits for a batch and while it streams, so the
    reaper can tell a busy worker from a dead one. Every write is fenced on the claim (``ReplyClaim``): an
    attempt whose reply was failed or retried meanwhile stops and writes nothing.
    """
    now = timezone.now()
    claimed = patiently(lambda: Reply.objects.filter(pk=reply_id, status=Reply.Status.QUEUED).update(
        status=Reply.Status.STREAMING, started_at=now, heartbeat_at=now, worker=worker[:200], error=""),
        f"reply {reply_id}")
    if not claimed:
        return "skipped"
    claim = ReplyClaim(reply_id, worker[:200], now)
    reply = patiently(lambda: Reply.objects.select_related("turn__conversation__user__profile").get(pk=reply_id),
                      f"reply {reply_id}")
    redis_client = client()
    parts: list[str] = []
    request = None
    try:
        redis_client.delete(reply.stream_key)  # a stream left by an earlier attempt of this reply
        from trainer.core.batch_generation import GenerationRequest

        with beating(claim):  # loading a version may take minutes
            plan = reply_plan(reply)
        messages, sampling = services.reply_generation_settings(reply=reply)
        request = GenerationRequest(messages, plan.soft_prompt, max_prompt_length=settings.CHAT_MAX_PROMPT_TOKENS,
                                    **sampling)
        written_before = 0
        if reply.serving.get("continue") and reply.content:
            # A cut candidate written on: the model continues its own unfinished reply, which streams again first.
            written_before = reply.token_count
            request.prompt_ids = continued_prompt(plan.scheduler.tokenizer, request, reply.content)
            parts.append(reply.content)
            redis_client.xadd(reply.stream_key, {"t": reply.content})
        plan.scheduler.submit(request)
        stopped = _relay(request, reply, redis_client, parts, claim)
        status = Reply.Status.STOPPED if stopped else Reply.Status.DONE
        continued = reply.serving.get("continued", 0) + (1 if written_before else 0)
        if not patiently(lambda: claim.rows().update(
            status=status, content="".join(parts), token_count=written_before + request.tokens,
            model_name=plan.name[:120],
            serving={**plan.record, "batch": request.batch_size, "cut": request.cut and not stopped,
                     **({"continued": continued} if continued else {})},
            finished_at=timezone.now(), error="",
        ), f"reply {reply_id}"):
            raise ReplyLost(f"reply {reply_id} is no longer this attempt's")
        streams.finish(reply, status)
        return status
    except ReplyLost as exc:  # failed by bookkeeping or retried meanwhile: the row and its stream are not ours
        log.warning("reply %s: stopped writing: %s", reply_id, exc)
        if request is not None:
            request.cancelled = True  # its batch row stops at the next token
        return "superseded"
    except Exception as exc:
        log.exception("reply %s failed", reply_id)
        reason = failure_message(exc)
        if patiently(lambda: claim.rows().update(status=Reply.Status.FAILED, error=reason, content="".join(parts),
                                                 finished_at=timezone.now()), f"reply {reply_id}"):
            try:
                streams.finish(reply, Reply.Status.FAILED)
            except Exception:  # Redis itself may be what failed
                pass
        return Reply.Status.FAILED


def continued_prompt(tokenizer, request, written: str) -> list[int]:
    """The prompt that makes the model write on from ``written``: the templated prompt (the generation prompt
    opens the assistant's turn), then the reply so far as plain tokens, with no end-of-turn after it."""
    from trainer.core.batch_generation import encoded

    return encoded(tokenizer, request) + tokenizer.encode(written, add_special_tokens=False)


def failure_message(exc: BaseException) -> str:
    """What a person reads when their reply could not be finished: what happened and what to do."""
    import redis

    from trainer.core.vllm import VLLMUnavailable

    from trainer.core.batch_generation import EngineClosed

    if isinstance(exc, redis.RedisError):
        happened = "the model worker lost contact with Redis, which carries replies to your browser"
    elif isinstance(exc, EngineClosed):
        happened = "the model version it waited for was unloaded to make room for a newer one"
    elif isinstance(exc, ReplyTimeout):
        happened = str(exc)
    elif isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        happened = "the model worker ran out of memory"
    elif isinstance(exc, VLLMUnavailable):
        happened = ("the model server (vLLM) could not be reached or stopped answering; staff find the fix on "
                    "the status page")
    else:
        happened = f"the model worker hit an error ({exc.__class__.__name__}; staff find it in the worker's log)"
    return f"This reply could not be finished: {happened}. What was written so far is kept. Press Retry."


class ReplyTimeout(RuntimeError):
    """A reply that did not end within ``REPLY_MAX_SECONDS`` (its model never answered)."""


def _relay(request, reply: Reply, redis_client, parts: list[str], claim: ReplyClaim | None = None) -> bool:
    """Copy the scheduler's deltas into ``parts`` and the reply's Redis stream; pass a stop request back;
    touch the reply's heartbeat every HEARTBEAT_SECONDS, also while it waits for a batch (``ReplyLost`` when
    the claim no longer holds). True if stopped. It does not wait for good: a stopped reply whose model does
    not end it within STOP_GRACE_SECONDS ends as stopped, and one that has not ended after
    ``REPLY_MAX_SECONDS`` is cancelled and fails with that reason."""
    from trainer.core.batch_generation import END

    stopped = False
    started = touched = time.monotonic()
    stopped_at = None
    while True:
        try:
            piece = request.deltas.get(timeout=STOP_POLL_SECONDS)
        except queue.Empty:
            piece = ""
        if piece is END:
            if request.error is not None:
                raise request.error
            return stopped
        if piece:
            parts.append(piece)
            redis_client.xadd(reply.stream_key, {"t": piece})
        now = time.monotonic()
        if not stopped and redis_client.exists(reply.stop_key):
            stopped = request.cancelled = True
            stopped_at = now
        if stopped and now - stopped_at > STOP_GRACE_SECONDS:
            return True  # the model never acknowledged the stop: the reply ends as stopped all the same
        if now - started > settings.REPLY_MAX_SECONDS:
            request.cancelled = True
            raise ReplyTimeout(f"it had not ended after {settings.REPLY_MAX_SECONDS} s (REPLY_MAX_SECONDS), "
                               "so it was given up")
        if now - touched > HEARTBEAT_SECONDS:
            touched = now
            if claim is not None:
                claim.touch()
            else:
                Reply.objects.filter(pk=reply.pk, status=Reply.Status.STREAMING).update(
                    heartbeat_at=timezone.now())
