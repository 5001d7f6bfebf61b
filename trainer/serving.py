"""The generation worker's side: load the model once per process, stream a
reply's tokens into Redis, and save the finished text in the database."""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.utils import timezone

from trainer import provision
from users import services, streams
from users.models import Reply

log = logging.getLogger(__name__)

_lock = threading.Lock()
_loaded: dict[str, object] = {}


def load_base_model():
    """(model, tokenizer, name), loaded on first use and kept for the process."""
    with _lock:
        if "model" not in _loaded:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            location = provision.resolve(settings.BASE_MODEL, settings.DATA_DIR)
            started = time.perf_counter()
            tokenizer = AutoTokenizer.from_pretrained(location.path)
            model = AutoModelForCausalLM.from_pretrained(location.path, dtype=torch.float32)
            model.eval()
            _loaded.update(model=model, tokenizer=tokenizer, name=location.name)
            log.info("loaded %s in %.1f s", location.name, time.perf_counter() - started)
    return _loaded["model"], _loaded["tokenizer"], _loaded["name"]


def generate_reply(reply_id: int) -> str:
    """Produce one reply. A second delivery of the same task finds it claimed and does nothing."""
    claimed = Reply.objects.filter(pk=reply_id, status=Reply.Status.QUEUED).update(
        status=Reply.Status.STREAMING, started_at=timezone.now()
    )
    if not claimed:
        return "skipped"
    reply = Reply.objects.select_related("turn").get(pk=reply_id)
    redis_client = streams.client()
    try:
        from trainer.core.generation import stream_generate

        model, tokenizer, name = load_base_model()
        messages, sampling = services.reply_generation_settings(reply=reply)
        parts: list[str] = []
        stopped = False

        def should_stop() -> bool:
            nonlocal stopped
            stopped = bool(redis_client.exists(reply.stop_key))
            return stopped

        for delta in stream_generate(model, tokenizer, messages, should_stop=should_stop, **sampling):
            parts.append(delta)
            redis_client.xadd(reply.stream_key, {"t": delta})
        status = Reply.Status.STOPPED if stopped else Reply.Status.DONE
        Reply.objects.filter(pk=reply_id).update(
            status=status, content="".join(parts), token_count=len(parts), model_name=name,
            finished_at=timezone.now(),
        )
        _finish_stream(redis_client, reply, status)
        return status
    except Exception as exc:
        log.exception("reply %s failed", reply_id)
        reason = f"Generation failed: {exc.__class__.__name__}: {exc}"
        Reply.objects.filter(pk=reply_id).update(status=Reply.Status.FAILED, error=reason, finished_at=timezone.now())
        try:
            _finish_stream(redis_client, reply, Reply.Status.FAILED)
        except Exception:  # Redis itself may be what failed
            pass
        return Reply.Status.FAILED


def _finish_stream(redis_client, reply: Reply, status: str) -> None:
    pipe = redis_client.pipeline()
    pipe.xadd(reply.stream_key, {"end": status})
    pipe.expire(reply.stream_key, settings.STREAM_TTL_SECONDS)
    pipe.delete(reply.stop_key)
    pipe.execute()
