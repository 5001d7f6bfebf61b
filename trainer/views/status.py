"""The status page: database, Redis, workers and base model, each with what to do when red."""

from alignment_site.access import staff_required
from django.shortcuts import render

from trainer import health


@staff_required
def status(request):
    checks = health.all_checks()
    return render(request, "status.html", {"checks": checks, "all_ok": all(c.ok for c in checks)})
