"""The "Does it personalize?" part of a run's page: start or cancel the evaluation, its live progress, and the
report's exports. Staff only; a participant sees their own row in their side panel."""

import json

from django.contrib import messages
from alignment_site.access import staff_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from trainer.models import PersonalEvaluation, TrainingRun
from trainer.personalization import report, services


def personalization_context(run: TrainingRun, *, group_by: str = "group") -> dict:
    """What the run page (and the compare page, for each run) shows of the evaluation."""
    job = run.personal_evaluations.first()
    personalized = (run.config or {}).get("user_model", "none") != "none"
    waiting = job is None and personalized and run.baseline_id is not None and run.baseline.is_active
    return {"job": job, "report": report.personalization_report(run, group_by=group_by),
            "groupings": report.GROUPINGS, "personalized": personalized, "waiting_for_baseline": waiting,
            "job_state": job.status if job else "waiting" if waiting else "none",
            "job_polls": bool(job and job.is_active or waiting)}


@require_POST
@staff_required
def run_evaluate(request, run_id: int):
    run = get_object_or_404(TrainingRun.objects.select_related("baseline"), pk=run_id)
    return _act(request, run.pk, lambda: services.evaluation_start(run=run, created_by=request.user),
                "Evaluation queued: a train worker writes the replies and judges them.")


@require_POST
@staff_required
def evaluation_cancel(request, evaluation_id: int):
    evaluation = get_object_or_404(PersonalEvaluation, pk=evaluation_id)
    return _act(request, evaluation.run_id, lambda: services.evaluation_cancel(evaluation=evaluation),
                "Cancel requested: it stops after the current batch of replies; nothing is kept.")


def _act(request, run_id: int, action, success: str):
    try:
        action()
    except services.EvaluationStateError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success)
    return redirect("run_detail", run_id=run_id)


@staff_required
def personalization_progress(request, run_id: int):
    """The evaluation's live line, polled while it is queued or running, or while the baseline it waits for
    trains; the page reloads when that changes (the evaluation starts or ends)."""
    run = get_object_or_404(TrainingRun.objects.select_related("baseline"), pk=run_id)
    context = {"run": run, **personalization_context(run)}
    response = render(request, "trainer/_personalization.html#job", context)
    if request.htmx and request.GET.get("shown") != context["job_state"]:
        response["HX-Refresh"] = "true"
    return response


@staff_required
def run_report_export(request, run_id: int, fmt: str):
    if fmt not in ("json", "csv"):
        raise Http404("The report is exported as .json or .csv.")
    run = get_object_or_404(TrainingRun, pk=run_id)
    found = report.personalization_report(run, group_by=request.GET.get("by", "group"))
    if found is None:
        raise Http404("This run has no completed personalization evaluation yet.")
    if fmt == "csv":
        response = HttpResponse(report.report_csv(found), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(json.dumps(found, indent=1), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-personalization.{fmt}"'
    return response
