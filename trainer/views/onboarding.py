"""A version's onboarding pool on its run page: being prepared (polled), ready with its size and time and what
its newcomers did with it, or failed with the reason and a button to prepare it again."""

import statistics

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from alignment_site.access import staff_required
from trainer.models import OnboardingPool, TrainingRun
from trainer.pools import PoolStateError, pool_request


def onboarding_context(run: TrainingRun) -> dict:
    """The pool's row (or None) and, once newcomers used it, how many, their answers and the server's time."""
    from users.models import Onboarding

    pool = OnboardingPool.objects.filter(run=run).first()
    rows = list(Onboarding.objects.filter(run=run).values_list("answers", "strategy"))
    seconds = sorted(a["seconds"] for answers, _ in rows for a in answers if "seconds" in a)
    used = {"people": len(rows), "answers": sum(len(a) for a, _ in rows),
            "strategies": sorted({s for _, s in rows})}
    if seconds:
        used["median_ms"] = 1000 * statistics.median(seconds)
        used["p95_ms"] = 1000 * seconds[int(0.95 * (len(seconds) - 1))]
    return {"pool": pool, "pool_used": used, "questions_asked": settings.ONBOARDING_QUESTIONS,
            "curve": curve_rows(pool.curve if pool else {})}


def curve_rows(curve: dict) -> dict | None:
    """The simulated newcomers' curve as a table: counts, then a row per group and strategy of "mean ± half"."""
    if not curve.get("groups"):
        return None
    rows = [{"group": group, "strategy": strategy,
             "cells": [f"{100 * mean:.0f} % ± {100 * half:.0f}" for mean, half in values]}
            for group, by_strategy in curve["groups"].items() for strategy, values in by_strategy.items()]
    return {"counts": curve["counts"], "newcomers": curve["newcomers"], "rows": rows}


@staff_required
def run_onboarding_panel(request, run_id: int):
    run = get_object_or_404(TrainingRun, pk=run_id)
    return render(request, "trainer/_onboarding.html", {"run": run, **onboarding_context(run)})


@require_POST
@staff_required
def run_onboarding_prepare(request, run_id: int):
    run = get_object_or_404(TrainingRun, pk=run_id, status=TrainingRun.Status.COMPLETED)
    try:
        if pool_request(run=run) is None:
            messages.error(request, "A plain-DPO version has no vectors: its newcomers cannot be placed.")
    except PoolStateError as exc:
        messages.error(request, str(exc))
    return redirect("run_detail", run_id=run.pk)
