from django.contrib import admin, messages

from trainer import services
from trainer.models import Activation, EvaluationItem, PersonalEvaluation, RunLog, TrainingRun


@admin.action(description="Start a new run with the same settings and data")
def start_again(modeladmin, request, queryset):
    for run in queryset:
        new = services.run_create(created_by=request.user, name=f"{run} (again)", config=run.config,
                                  data_filter=run.data_filter, with_baseline=False)
        messages.success(request, f"Queued {new}.")


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "status", "step", "total_steps", "created_by", "created_at", "worker")
    list_filter = ("status",)
    search_fields = ("name",)
    readonly_fields = ("created_at", "started_at", "heartbeat_at", "finished_at", "attempts", "worker")
    actions = [start_again]


@admin.register(RunLog)
class RunLogAdmin(admin.ModelAdmin):
    list_display = ("run", "kind", "step")
    list_filter = ("kind",)


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
