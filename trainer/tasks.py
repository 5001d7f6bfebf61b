"""Celery tasks: take ids, call a service. Imported by the web process too, so
nothing heavy (torch) is imported at module level."""

from celery import shared_task


@shared_task(name="trainer.generate_reply", acks_late=False)
def generate_reply(reply_id: int) -> str:
    # At-most-once: a reply half-streamed by a dead worker is not restarted
    # behind the user's back; they see it failed and can press Retry.
    from trainer.worker import serving

    return serving.generate_reply(reply_id)


@shared_task(name="trainer.train_run", acks_late=True)
def train_run(run_id: int) -> str:
    # acks_late: a worker killed mid-run leaves the message to be redelivered;
    # the claim on the run row makes that redelivery a no-op, and the heartbeat
    # reaper marks the run failed so a person can resume it.
    from trainer.worker import training

    return training.execute(run_id)


@shared_task(name="trainer.fast_fit", acks_late=True)
def fast_fit(fit_id: int) -> str:
    # Refit one person's vectors; the claim on the VectorFit row makes a redelivery a no-op.
    from trainer.worker import refit

    return refit.vectors_refit(fit_id)
