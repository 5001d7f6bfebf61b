"""Celery tasks: take ids, call a service. Imported by the web process too, so
nothing heavy (torch) is imported at module level.

Every worker also keeps the books, so that nothing waits for a browser to notice: at start it fails
the replies its previous process was writing, and every BOOKKEEPING_SECONDS (a setting) it fails replies and runs
whose worker fell silent (conditional updates: any number of workers may do this at once).
"""

import logging
import threading
import time

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown

log = logging.getLogger(__name__)


@shared_task(name="trainer.generate_reply", acks_late=False, bind=True)
def generate_reply(self, reply_id: int) -> str:
    # At-most-once: a reply half-streamed by a dead worker is not restarted
    # behind the user's back; they see it failed, with its text so far, and can press Retry.
    from trainer.worker import serving

    return serving.generate_reply(reply_id, worker=self.request.hostname or "")


@shared_task(name="trainer.prepare_version", acks_late=False)
def prepare_version(run_id: int | None) -> str:
    # SERVING_BACKEND=vllm: an activated version's merged folder and server, ready before its first reply.
    from trainer.worker import serving

    return serving.prepare_version(run_id)


@shared_task(name="trainer.train_run", acks_late=True, bind=True)
def train_run(self, run_id: int) -> str:
    # acks_late: a worker killed mid-run leaves the message to be redelivered;
    # the claim on the run row makes that redelivery a no-op, and the heartbeat
    # reaper marks the run failed so a person can resume it.
    from trainer.worker import training

    return training.execute(run_id, worker=self.request.hostname or "")


@shared_task(name="trainer.fast_fit", acks_late=True, bind=True)
def fast_fit(self, fit_id: int) -> str:
    # Refit one person's vectors; the claim on the VectorFit row makes a redelivery a no-op.
    from trainer.worker import refit

    return refit.vectors_refit(fit_id, worker=self.request.hostname or "")


@shared_task(name="trainer.prepare_onboarding", acks_late=True, bind=True)
def prepare_onboarding(self, pool_id: int) -> str:
    # A version's onboarding pool; the claim on the pool's row makes a redelivery a no-op.
    from trainer.worker import onboarding

    return onboarding.execute(pool_id, worker=self.request.hostname or "")


@shared_task(name="trainer.export_version", acks_late=False)
def export_version(run_id: int) -> str:
    # A version zipped for the field's tools (trainer.downloads); a lost one is asked for again from the run page.
    from trainer.version_export import prepare_download

    return prepare_download(run_id)


@shared_task(name="trainer.evaluate_version", acks_late=True, bind=True)
def evaluate_version(self, evaluation_id: int) -> str:
    # "Does it personalize?": the claim on the evaluation row makes a redelivery a no-op.
    from trainer.worker import personalization

    return personalization.execute(evaluation_id, worker=self.request.hostname or "")


@worker_ready.connect
def start_bookkeeping(sender=None, **_kwargs) -> None:
    from trainer.services import runs_reap_stale
    from users.chat.services import fits_reap_stale
    from users.conversations.services import replies_reap_orphans

    hostname = getattr(sender, "hostname", "") or ""
    if hostname:
        reaped, fits = replies_reap_orphans(worker=hostname), fits_reap_stale(worker=hostname)
        runs = runs_reap_stale(worker=hostname)
        if reaped or fits or runs:
            log.warning("failed %d replies, %d refits and %d runs that this worker's previous process (%s) was "
                        "working on", reaped, fits, runs, hostname)
    queues = sorted(getattr(getattr(sender, "app", None) and sender.app.amqp.queues, "consume_from", None) or [])
    threading.Thread(target=_bookkeeping_loop, args=(hostname, queues), name="bookkeeping", daemon=True).start()
    from django.conf import settings

    if settings.SERVING_BACKEND == "vllm" and settings.GENERATE_QUEUE in queues:
        threading.Thread(target=_warm_serving, name="warm-serving", daemon=True).start()


def _warm_serving() -> None:
    """On vLLM a model server takes a while to start: start the active version's (or the base model's) now,
    not when the first person waits for a reply."""
    from django.db import close_old_connections

    from trainer.selectors import active_version
    from trainer.worker import serving

    try:
        active = active_version()
        log.info("serving warm-up: %s", serving.prepare_version(active[0] if active else None))
    except Exception:  # the first reply tries again, and fails with the reason if it still cannot
        log.exception("could not prepare serving at start-up")
    finally:
        close_old_connections()


@worker_shutdown.connect
def withdraw_device_report(sender=None, **_kwargs) -> None:
    """A worker that stops takes its device report with it (a killed one's expires after three rounds), and
    stops its vLLM servers."""
    from trainer import devices
    from trainer.worker import vllm

    vllm.stop_all()  # the model servers this worker started (none unless SERVING_BACKEND=vllm)
    hostname = getattr(sender, "hostname", "") or ""
    if hostname:
        try:
            devices.report_withdraw(hostname)
        except Exception:  # Redis down: the report expires by itself
            log.exception("could not withdraw this worker's device report")


def _report_device(hostname: str, queues: list[str]) -> None:
    """Tell the web which device and how much memory this worker has (read without touching CUDA)."""
    from trainer import devices

    if hostname:
        try:
            devices.report_publish(devices.report_of_this_machine(hostname, queues))
        except Exception:  # Redis down: the next round tries again
            log.exception("could not publish this worker's device report")


def _bookkeeping_loop(hostname: str = "", queues: list[str] = ()) -> None:
    from django.conf import settings
    from django.db import close_old_connections

    from trainer.personalization.services import evaluations_reap_stale
    from trainer.pools import pools_reap_stale
    from trainer.services import runs_reap_stale
    from users.chat.services import fits_reap_stale
    from users.conversations.services import replies_reap_lost, replies_reap_orphans

    _report_device(hostname, list(queues))
    while True:
        time.sleep(settings.BOOKKEEPING_SECONDS)
        _report_device(hostname, list(queues))
        try:
            replies, runs, evaluations = replies_reap_orphans(), runs_reap_stale(), evaluations_reap_stale()
            fits, lost, pools = fits_reap_stale(), replies_reap_lost(), pools_reap_stale()
            if replies or runs or evaluations or fits or lost or pools:
                log.warning("bookkeeping: failed %d orphaned replies, %d silent runs, %d silent evaluations, "
                            "%d stalled refits, %d replies whose request was lost and %d silent onboarding pools",
                            replies, runs, evaluations, fits, lost, pools)
        except Exception:  # a database or Redis hiccup: try again next round
            log.exception("bookkeeping round failed")
        finally:
            close_old_connections()
