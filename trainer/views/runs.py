"""The runs pages: list, start form with its live preview, a run with its charts and evaluation, compare two,
cancel, resume, activate and roll back a version."""

import re

from django import forms
from django.contrib import messages
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from alignment_site.access import staff_required
from trainer import data_defaults, downloads, preflight, selectors, services
from trainer.forms import RunForm
from trainer.models import TrainingRun
from trainer.views.onboarding import onboarding_context
from trainer.views.personalization import personalization_context
from trainer.views.presenters import run_context


@staff_required
def run_list(request):
    runs = list(selectors.runs_page()[:200])
    return render(request, "trainer/run_list.html", {
        "runs": runs, "activation": selectors.active_activation(),
        "completed": [r for r in runs if r.status == TrainingRun.Status.COMPLETED],
    })


@staff_required
def run_new(request):
    preset = request.GET.get("preset") if request.GET.get("preset") in ("cpu", "paper") else None
    applying = request.method == "POST" and bool(request.POST.get("apply"))  # "use this change": the form again
    data = RunForm.data_with_change(request.POST) if request.method == "POST" else None
    fix = None
    initial = preflight.form_defaults(preset)
    clone = request.GET.get("clone", "")
    cloned = data is None and re.fullmatch(r"[0-9]{1,9}", clone)
    read_off_data = not (preset or cloned)  # without a named preset, settings read off the data, with reasons
    chosen = data_defaults.form_choices(initial, RunForm.initial_data_filter()) if read_off_data else None
    if cloned:  # "start a new run with these settings"
        initial = RunForm.initial_from(get_object_or_404(TrainingRun, pk=int(clone)))
    elif chosen is not None and data is None:
        initial = {**initial, **chosen.values}
    form = RunForm(data, initial=initial, reasons=chosen.explained() if chosen else None)
    if data is not None and not applying and form.is_valid():
        try:
            run = services.run_create(created_by=request.user, name=form.cleaned_data["name"],
                                      config=form.validated_config(), data_filter=form.data_filter(),
                                      with_baseline=form.cleaned_data["with_baseline"],
                                      repeats=form.cleaned_data["repeats"], **form.launch())
        except services.RunDoesNotFit as refused:
            form.add_error(None, str(refused))
            fix = RunForm.change_button(refused.fit.change)
        except (forms.ValidationError, ValueError) as exc:  # the training library's own rules, on the form
            form.add_error(None, exc.messages[0] if isinstance(exc, forms.ValidationError) else str(exc))
        else:
            return redirect("run_detail", run_id=run.pk)
    preview = _preview(form) if form.is_bound and form.is_valid() else None
    return render(request, "trainer/run_new.html", {"form": form, "preview": preview, "fix": fix,
                                                    "preset": preset})


@staff_required
def run_preview(request):
    form = RunForm(request.GET)
    preview = _preview(form) if form.is_valid() else None
    return render(request, "trainer/run_new.html#preview", {"form": form, "preview": preview})


def _preview(form: RunForm) -> dict:
    config = form.config()
    preview = services.run_preview(data_filter=form.data_filter(), config=config,
                                   processes=form.cleaned_data["processes"])
    return {**preview, "fit": preflight.check(config, form.cleaned_data["processes"]),
            "notes": preflight.schedule_notes(config, preview["steps"])}


@staff_required
def run_detail(request, run_id: int):
    run = get_object_or_404(TrainingRun.objects.select_related("baseline", "created_by"), pk=run_id)
    context = run_context(run, color_by=request.GET.get("color", "group"))
    if run.status == TrainingRun.Status.COMPLETED:
        context.update(personalization_context(run, group_by=request.GET.get("by", "group")))
        context["download"] = downloads.download_state(run)
        context.update(onboarding_context(run))
    return render(request, "trainer/run_detail.html", context)


@staff_required
def run_progress(request, run_id: int):
    """The live panel, polled while the run is queued or running."""
    run = get_object_or_404(TrainingRun, pk=run_id)
    response = render(request, "trainer/run_detail.html#progress", {"run": run})
    if not run.is_active and request.htmx:
        response["HX-Refresh"] = "true"  # show the results panels once it ends
    return response


@staff_required
def run_metrics(request, run_id: int):
    run = get_object_or_404(TrainingRun, pk=run_id)
    return JsonResponse({"status": run.status, "step": run.step, "total": run.total_steps,
                         "series": selectors.run_series(run)})


@require_POST
@staff_required
def run_cancel(request, run_id: int):
    """Asks first (naming the baseline that goes with it), then cancels when the answer says ``confirm=yes``."""
    run = get_object_or_404(TrainingRun.objects.select_related("baseline"), pk=run_id)
    if request.POST.get("confirm") != "yes":
        return render(request, "trainer/run_cancel.html", {"run": run,
                                                           "baseline": selectors.baseline_cancelled_with(run)})
    try:
        baseline = services.run_cancel(run=run)
    except services.RunStateError as exc:
        messages.error(request, str(exc))
    else:
        also = f" Its plain-DPO baseline, {baseline}, is cancelled too." if baseline else ""
        messages.success(request, ("Cancelled." if run.status == TrainingRun.Status.QUEUED else
                                   "Cancel requested: the run stops after the current micro-batch.") + also)
    return redirect("run_detail", run_id=run.pk)


@require_POST
@staff_required
def run_resume(request, run_id: int):
    return _act(request, run_id, services.run_resume, "Queued again: it continues from its last checkpoint.")


@require_POST
@staff_required
def run_activate(request, run_id: int):
    run = get_object_or_404(TrainingRun, pk=run_id)
    try:
        services.run_activate(run=run, user=request.user, confirmed=request.POST.get("confirm") == "yes")
    except services.NeedsConfirmation as question:
        return render(request, "trainer/run_confirm.html", {"run": run, "question": str(question)}, status=409)
    except services.RunStateError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Activated: chat now uses this version.")
    return redirect("run_detail", run_id=run.pk)


@require_POST
@staff_required
def run_download_prepare(request, run_id: int):
    """Ask a train worker for the version's download (the export folder, zipped)."""
    run = get_object_or_404(TrainingRun, pk=run_id)
    try:
        downloads.download_request(run=run)
    except downloads.DownloadError as exc:
        messages.error(request, str(exc))
    return redirect(reverse("run_detail", args=[run.pk]) + "#download")


@staff_required
def run_download_panel(request, run_id: int):
    """The download panel, polled while the worker writes it."""
    run = get_object_or_404(TrainingRun, pk=run_id)
    return render(request, "trainer/run_detail.html#download", {"run": run,
                                                                "download": downloads.download_state(run)})


@staff_required
def run_download(request, run_id: int):
    run = get_object_or_404(TrainingRun, pk=run_id)
    if downloads.download_state(run).state != "ready":
        raise Http404("No download is ready for this run: prepare one on its page.")
    path = downloads.zip_path(run.pk)
    return FileResponse(open(path, "rb"), as_attachment=True, filename=path.name, content_type="application/zip")


@require_POST
@staff_required
def run_delete(request, run_id: int):
    run = get_object_or_404(TrainingRun, pk=run_id)
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the box to confirm: deleting a run removes its logs and saved model.")
        return redirect("run_detail", run_id=run.pk)
    try:
        services.run_delete(run=run)
    except services.RunStateError as exc:
        messages.error(request, str(exc))
        return redirect("run_detail", run_id=run.pk)
    messages.success(request, f"Deleted {run} and its files.")
    return redirect("run_list")


@require_POST
@staff_required
def run_notes(request, run_id: int):
    return _act(request, run_id, lambda run: services.run_notes_save(run=run, notes=request.POST.get("notes", "")),
                "Notes saved.", positional=True)


@require_POST
@staff_required
def version_rollback(request):
    try:
        activation = services.run_rollback(user=request.user)
    except services.RunStateError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Rolled back: chat uses {activation.run} again.")
    return redirect("run_list")


def _act(request, run_id: int, action, success: str, positional: bool = False):
    run = get_object_or_404(TrainingRun, pk=run_id)
    try:
        action(run) if positional else action(run=run)
    except services.RunStateError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success)
    return redirect("run_detail", run_id=run.pk)


@staff_required
def run_compare(request):
    ids = [request.GET.get("a"), request.GET.get("b")]
    if not all(i and re.fullmatch(r"[0-9]{1,9}", i) for i in ids):  # not str.isdigit: it takes "²"
        raise Http404("Choose two runs to compare.")
    runs = {r.pk: r for r in TrainingRun.objects.filter(pk__in=ids)}
    if len(runs) != 2:
        raise Http404("Choose two different runs that exist.")
    a, b = runs[int(ids[0])], runs[int(ids[1])]
    keys = sorted(set(a.config) | set(b.config))
    config_rows = [(k, a.config.get(k), b.config.get(k)) for k in keys]
    return render(request, "trainer/run_compare.html", {
        "a": a, "b": b, "config_rows": config_rows,
        "personalization": [{"run": r, **personalization_context(r, group_by=request.GET.get("by", "group"))}
                            for r in (a, b)],
        "series": {"a": selectors.run_series(a), "b": selectors.run_series(b)},
    })
