from django.contrib import admin, messages

from trainer import services
from trainer.models import Activation, EvaluationItem, PersonalEvaluation, RunLog, TrainingRun


@admin.action(description="Start a new run with the same settings and data")
def start_again(modeladmin, request, queryset):
    for run in queryset:
        new = services.run_create(created_by=request.user, name=f"{run} (again)", config=run.config,
                                  data_filter=run.data_filter, with_baseline=False)
        messages.success(request, f"Queued {new}.")


RUN_EDITABLE = ("name", "notes")


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    """A run's name and notes are editable here; everything else is written by the run's worker and the run
    page (status, artifacts path, launch config, settings): edited by hand it would point a version at another
    folder or flip a failed run to completed."""

    list_display = ("id", "name", "status", "step", "total_steps", "created_by", "created_at", "worker")
    list_filter = ("status",)
    search_fields = ("name",)
    readonly_fields = [f.name for f in TrainingRun._meta.fields if f.name not in RUN_EDITABLE]
    actions = [start_again]

    def has_add_permission(self, request):
        return False  # runs are started from the start form, which checks the data and the machine


@admin.register(RunLog)
class RunLogAdmin(admin.ModelAdmin):
    """Read only: a run's log is what its worker reported."""

    list_display = ("run", "kind", "step")
    list_filter = ("kind",)
    readonly_fields = [f.name for f in RunLog._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Activation)
class ActivationAdmin(admin.ModelAdmin):
    list_display = ("run", "activated_by", "activated_at")


@admin.register(PersonalEvaluation)
class PersonalEvaluationAdmin(admin.ModelAdmin):
    """Read only: an evaluation is written by its task; the run page starts and cancels them."""

    list_display = ("id", "run", "baseline", "status", "done", "total", "created_at", "worker")
    list_filter = ("status",)
    readonly_fields = [f.name for f in PersonalEvaluation._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(EvaluationItem)
class EvaluationItemAdmin(admin.ModelAdmin):
    list_display = ("evaluation", "person", "judge", "outcomes")
    list_filter = ("judge",)
    search_fields = ("person",)
    readonly_fields = [f.name for f in EvaluationItem._meta.fields]

    def has_add_permission(self, request):
        return False
