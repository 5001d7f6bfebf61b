"""Training runs, their logged metrics, and which run serves chat."""

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone

RUN_LOG = "run.log"  # in a run's folder: what the worker did, a line each (the run page shows the last ones)
SPLIT_FILE = "split.json"  # in a run's folder: which conversations it trained on and which it held out
GROUP_LOG = "processes.log"  # in a run's folder: the output of a run's processes, every attempt


def run_folder(run_id: int) -> Path:
    """A run's own folder: checkpoints, logs, and the saved model under ``model/``."""
    return settings.ARTIFACTS_DIR / "runs" / str(run_id)


def fail_silent(table, *, again: str, **fields) -> int:
    """Fail the running rows of ``table`` (any model with a status and a heartbeat: an evaluation, an onboarding
    pool) whose worker has not beaten for TRAIN_HEARTBEAT_TIMEOUT, saying why and what to do (``again``)."""
    timeout, now = settings.TRAIN_HEARTBEAT_TIMEOUT, timezone.now()
    return table.objects.filter(status=table.Status.RUNNING, heartbeat_at__lt=now - timedelta(seconds=timeout)).update(
        status=table.Status.FAILED, finished_at=now, **fields,
        error=f"The worker stopped sending heartbeats for over {timeout} s (killed, out of memory, or its machine "
              f"went down); nothing was kept. {again}")


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    RESUMABLE = (Status.FAILED, Status.CANCELLED)

    name = models.CharField(max_length=120, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                   related_name="training_runs")
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # The TrainConfig as a dict (trainer.core.config), and which data it trains on.
    config = models.JSONField(default=dict)
    data_filter = models.JSONField(default=dict)
    data_summary = models.JSONField(default=dict, blank=True)
    # How many processes train it (one per GPU, or CPU processes): more than one runs the loop under
    # ``accelerate launch`` as a child process group; launch_config is an accelerate config file on the worker
    # (DeepSpeed ZeRO, FSDP), empty for plain DDP.
    processes = models.PositiveSmallIntegerField(default=1)
    launch_config = models.CharField(max_length=500, blank=True)
    # The plain-DPO run trained on the same data for comparison, when asked for.
    baseline = models.OneToOneField("self", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="baseline_of")
    # A repeat of another run with the next seed (the start form's "repeat with N seeds"): the personalization
    # report pools a run with its repeats and shows each seed's figure.
    repeat_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="repeats")
    # Progress, written by the worker on every optimizer step.
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    phase = models.CharField(max_length=60, blank=True)  # what the worker is doing now, in words
    # The work inside that phase as numbers (micro-batches, tokenised pairs...): the page's second bar.
    phase_name = models.CharField(max_length=40, blank=True)
    phase_done = models.PositiveIntegerField(null=True, blank=True)
    phase_total = models.PositiveIntegerField(null=True, blank=True)
    step_seconds = models.FloatField(null=True, blank=True)  # measured time of an optimizer step (moving average)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    notes = models.TextField(blank=True)  # staff's own notes on the run
    # Results: relative folder under ARTIFACTS_DIR, evaluation tables, the 2-D user map.
    artifacts = models.CharField(max_length=300, blank=True)
    evaluation = models.JSONField(default=dict, blank=True)
    user_map = models.JSONField(default=list, blank=True)
    diagnostics = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.name or f"Run {self.pk}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def has_vectors(self) -> bool:
        """Whether the version has a user model (plain DPO has none: nobody's vectors to serve, fit or place)."""
        return (self.config or {}).get("user_model") != "none"

    @property
    def chance_note(self) -> str:
        """Why this version's held-out accuracy is no better than a coin, or "" when it is."""
        accuracy, n = (self.evaluation or {}).get("accuracy"), (self.evaluation or {}).get("n") or 0
        if accuracy is None or not n:
            return ""
        coin = 0.5 + 2 * (0.25 / n) ** 0.5  # what chance reaches on n pairs, about 95 % of the time
        if accuracy > coin:
            return ""
        return (f"Its held-out accuracy is {accuracy:.1%} on {n} pairs: no better than chance (a coin would reach "
                f"up to {coin:.1%} on that many), so it has not learned the ratings.")

    @property
    def phase_progress(self) -> tuple[int, int] | None:
        """(done, total) of the work inside a step, as the worker stored it (None when it has no count)."""
        if self.phase_done is None or not self.phase_total:
            return None
        return self.phase_done, self.phase_total

    @property
    def phase_progress_label(self) -> str:
        """What the phase's own bar counts, for its label: "Micro-batches" while training (over the whole run,
        before the first optimizer step ends too), else the phase's name ("Tokenising")."""
        return "Micro-batches" if self.phase_name == "training" else self.phase_name.capitalize()

    @property
    def elapsed_seconds(self) -> float | None:
        """How long it has been queued (before a worker takes it) or training; once ended, how long its last
        attempt ran."""
        from django.utils import timezone

        if self.is_active:
            return (timezone.now() - (self.started_at or self.created_at)).total_seconds()
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def silent_seconds(self) -> float | None:
        """How long a running run's worker has not reported, once that is past TRAIN_HEARTBEAT_TIMEOUT (the
        workers' bookkeeping fails it); None while it reports. Read only: a page never fails a run itself."""
        from django.conf import settings
        from django.utils import timezone

        if self.status != self.Status.RUNNING or self.heartbeat_at is None:
            return None
        silent = (timezone.now() - self.heartbeat_at).total_seconds()
        return silent if silent > settings.TRAIN_HEARTBEAT_TIMEOUT else None

    @property
    def eta_seconds(self) -> float | None:
        """Time left at the measured step time (before a second step is measured: the time so far per step)."""
        if self.status != self.Status.RUNNING or not self.step or not self.started_at or not self.heartbeat_at:
            return None
        per_step = self.step_seconds or (self.heartbeat_at - self.started_at).total_seconds() / self.step
        return per_step * (self.total_steps - self.step)


class RunLog(models.Model):
    """One logged step: training metrics, eval metrics, or a diagnostics report."""

    class Kind(models.TextChoices):
        TRAIN = "train", "Train"
        EVAL = "eval", "Eval"
        DIAG = "diag", "Gradient entanglement"

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="logs")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.TRAIN)
    step = models.PositiveIntegerField()
    values = models.JSONField()

    class Meta:
        ordering = ["run", "kind", "step"]
        constraints = [models.UniqueConstraint(fields=["run", "kind", "step"], name="runlog_unique_step")]


class Activation(models.Model):
    """Which run serves chat: the newest row wins; older rows are the rollback history."""

    run = models.ForeignKey(TrainingRun, on_delete=models.PROTECT, related_name="activations")
    activated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    activated_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-activated_at", "-pk"]


class PersonalEvaluation(models.Model):
    """"Does it personalize?": replies to held-out prompts from a person's own vectors, the generic vectors, the
    plain-DPO baseline and the base model, judged per person (by the hidden rule of a simulated person, by the
    person themself in blind comparisons otherwise). Written by a task on the train queue."""

    Status = TrainingRun.Status  # the same life as a run's: queued, running, then completed, failed or cancelled
    ACTIVE = TrainingRun.ACTIVE

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="personal_evaluations")
    baseline = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Sampling and sizes (tokens, temperature, top_p, prompts per person, people, blind comparisons per person).
    settings = models.JSONField(default=dict)
    phase = models.CharField(max_length=80, blank=True)
    done = models.PositiveIntegerField(default=0)  # replies written so far
    total = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    summary = models.JSONField(default=dict, blank=True)  # people, prompts, seconds, where the prompts came from

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"personalization evaluation {self.pk} of {self.run}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


class EvaluationItem(models.Model):
    """One held-out prompt of one person: the four replies (same sampling seed) and how they were judged."""

    class Judge(models.TextChoices):
        RULE = "rule", "Hidden rule"  # a simulated person's own rule, without noise
        PERSON = "person", "The person"  # a blind comparison on their compare page

    evaluation = models.ForeignKey(PersonalEvaluation, on_delete=models.CASCADE, related_name="items")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    person = models.CharField(max_length=120)  # the exported user id the version knows them by
    seen = models.BooleanField(default=True)  # trained on (own vectors) or not (generic vectors stand in)
    prompt = models.JSONField()  # the messages the four replies answer
    seed = models.BigIntegerField()
    replies = models.JSONField()  # {"own": text, "generic": text, "baseline": text, "base": text}
    judge = models.CharField(max_length=8, choices=Judge.choices)
    # {"baseline": 1 | 0.5 | 0, "generic": ..., "base": ...}: own vectors against each; null until judged.
    outcomes = models.JSONField(null=True, blank=True)
    conversation = models.OneToOneField("users.Conversation", null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="evaluation_item")

    class Meta:
        ordering = ["evaluation", "person", "pk"]


class OnboardingPool(models.Model):
    """The questions a newcomer to a version is asked: pairs of replies the seen people disagree on, each with its
    margin and slope along the seen people's principal directions (``trainer.core.onboarding``), so that placing a
    newcomer never runs the model. Prepared once per version by a task on the train queue when it is activated;
    the files (``pool.json`` and ``basis.safetensors``) are written beside and renamed into ``path``."""

    Status = TrainingRun.Status  # queued, running, then completed or failed
    ACTIVE = TrainingRun.ACTIVE

    run = models.OneToOneField(TrainingRun, on_delete=models.CASCADE, related_name="onboarding_pool")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    path = models.CharField(max_length=300, blank=True)  # the folder, relative to ARTIFACTS_DIR
    questions = models.PositiveIntegerField(default=0)
    directions = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)  # candidate pairs measured so far
    total = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(null=True, blank=True)
    # For a simulated population: held-out accuracy of simulated newcomers of each group by answers, adaptive and
    # random ({"counts": [...], "newcomers": n, "groups": {group: {strategy: [[mean, half-width], ...]}}}).
    curve = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"onboarding pool of {self.run}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0
