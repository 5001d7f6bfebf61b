"""The queue page: runs waiting and training, and the workers on each queue (busy ones included)."""

from alignment_site.access import staff_required
from django.shortcuts import render

from trainer import health
from trainer.models import TrainingRun


@staff_required
def queue(request):
    redis_check = health.check_redis()
    workers = health.workers_by_queue() if redis_check.ok else {}
    runs = list(TrainingRun.objects.filter(status__in=TrainingRun.ACTIVE).order_by("created_at"))
    return render(request, "trainer/queue.html", {
        "redis": redis_check, "workers": workers, "queues": health.queue_names(),
        "running": [r for r in runs if r.status == TrainingRun.Status.RUNNING],
        "queued": [r for r in runs if r.status == TrainingRun.Status.QUEUED],
        "train_worker_missing": redis_check.ok and not workers.get("train"),
        "train_command": health.worker_command("train"),
    })
