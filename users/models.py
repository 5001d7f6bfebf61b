"""Conversations as PRISM records them: a conversation is a list of turns; a
turn is one user message and one or more candidate replies, of which one is
chosen to continue. A plain chat is the same thing with one reply per turn."""

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.formats import date_format

SCORE_MIN, SCORE_MAX = 1, 100  # PRISM's slider: 1 (Terrible) .. 100 (Perfect)


def new_stream_token() -> str:
    """A reply's own mark on its Redis keys: a stream left by another install or an earlier database
    under the same reply id never carries it, so it is never shown as this reply."""
    return secrets.token_hex(8)


def is_score(value) -> bool:
    """A whole number on PRISM's 1-100 rating scale (a bool is not a number here)."""
    return isinstance(value, int) and not isinstance(value, bool) and SCORE_MIN <= value <= SCORE_MAX


class Conversation(models.Model):
    class Kind(models.TextChoices):
        CHAT = "chat", "Chat"
        UNGUIDED = "unguided", "Unguided"
        VALUES = "values guided", "Values guided"
        CONTROVERSY = "controversy guided", "Controversy guided"
        COMPARE = "compare", "Compare"  # personalized vs generic vs base, rated blind
        ONBOARDING = "onboarding", "Onboarding"  # one blind comparison a newcomer answered: two replies, one chosen

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.CHAT)
    title = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # PRISM extras. Text that PRISM may leave null is nullable here so that an
    # import round-trips null and "" apart.
    prism_id = models.CharField(max_length=120, unique=True, null=True, blank=True)  # PRISM `conversation_id`
    opening_prompt = models.TextField(null=True, blank=True)
    performance_attributes = models.JSONField(null=True, blank=True)
    choice_attributes = models.JSONField(null=True, blank=True)
    open_feedback = models.TextField(null=True, blank=True)
    # Every other PRISM field exactly as read (timings, subsets, overrides of derived values).
    extra = models.JSONField(default=dict, blank=True)

    PRISM_KINDS = (Kind.UNGUIDED, Kind.VALUES, Kind.CONTROVERSY)
    EXPORTED_KINDS = (*PRISM_KINDS, Kind.COMPARE)  # what the PRISM export writes

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["user", "-updated_at"])]

    def __str__(self) -> str:
        """Its title; untitled (a chat with no message yet), its kind and day, never the row's id: that counts
        everyone's conversations and means nothing to the person."""
        if self.title:
            return self.title
        name = "Chat" if self.kind == self.Kind.CHAT else f"{self.get_kind_display()} conversation"
        if self.created_at is None:
            return name
        return f"{name} on {date_format(timezone.localtime(self.created_at), 'j F Y')}"


class Turn(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveIntegerField()  # PRISM's `turn`, from 0
    user_message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    tied = models.BooleanField(default=False)  # the top score was shared and the participant picked
    rated_at = models.DateTimeField(null=True, blank=True)  # when its ratings were saved on this site
    extra = models.JSONField(default=dict, blank=True)  # PRISM keys of the user's history entry we do not model

    class Meta:
        ordering = ["conversation", "index"]
        constraints = [models.UniqueConstraint(fields=["conversation", "index"], name="turn_unique_index")]

    def __str__(self) -> str:
        return f"{self.conversation_id}/{self.index}"


class Reply(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        STREAMING = "streaming", "Streaming"
        DONE = "done", "Done"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"

    FINISHED = (Status.DONE, Status.STOPPED, Status.FAILED)

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="replies")
    position = models.PositiveIntegerField(default=0)  # PRISM's `within_turn_id`
    source = models.CharField(max_length=120, default="base")  # which generator produced it
    model_name = models.CharField(max_length=120, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    content = models.TextField(blank=True)
    error = models.TextField(blank=True)
    score = models.PositiveSmallIntegerField(null=True, blank=True)  # 1 (Terrible) .. 100 (Perfect)
    chosen = models.BooleanField(default=False)
    model_provider = models.CharField(max_length=120, null=True, blank=True)
    prism_utterance_id = models.CharField(max_length=120, null=True, blank=True)
    prism_interaction_id = models.CharField(max_length=120, null=True, blank=True)
    extra = models.JSONField(default=dict, blank=True)  # PRISM history keys we do not model
    utterance_extra = models.JSONField(default=dict, blank=True)  # utterances.jsonl values that differ from ours
    token_count = models.PositiveIntegerField(default=0)
    stream_token = models.CharField(max_length=16, default=new_stream_token, editable=False)
    # The worker that claimed it (Celery node name) and when that worker last said it is still on it.
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # How the worker produced it: {"version": run id or null, "vectors": personal | fitted |
    # generic | none, "fit": VectorFit id, "batch": requests sharing the forward pass}.
    serving = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["turn", "position"]
        verbose_name_plural = "replies"
        constraints = [
            models.UniqueConstraint(fields=["turn", "position"], name="reply_unique_position"),
            models.CheckConstraint(
                condition=models.Q(score__isnull=True) | models.Q(score__gte=1, score__lte=100),
                name="reply_score_1_100",
            ),
        ]

    def __str__(self) -> str:
        return f"reply {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def continuable(self) -> bool:
        """A collection candidate that stopped at the length limit and is not rated yet: it can be written on
        from where it stopped (chat replies have their own Continue, a new message)."""
        return (self.status == self.Status.DONE and bool(self.serving.get("cut")) and self.score is None
                and self.source not in ("personal", "base", "generic") and not self.source.startswith("compare-"))

    @property
    def stream_key(self) -> str:
        return f"reply:{self.pk}:{self.stream_token}:stream"

    @property
    def stop_key(self) -> str:
        return f"reply:{self.pk}:{self.stream_token}:stop"


class ReplySource(models.Model):
    """One way of producing a candidate reply: the serving model with a system
    prompt and sampling settings (trained model versions can be added later).
    A reply names its source; the worker looks the settings up by that name."""

    name = models.SlugField(max_length=120, unique=True)
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(default=0.7)
    top_p = models.FloatField(default=0.9)
    max_new_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: CHAT_MAX_NEW_TOKENS.")
    model_provider = models.CharField(max_length=120, default="local")
    active = models.BooleanField(default=True, help_text="Offered as a candidate in new PRISM conversations.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Profile(models.Model):
    """A person's PRISM profile survey. Column names are PRISM's; text that
    PRISM may leave null is nullable so an import round-trips null and ""."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    prism_user_id = models.CharField(max_length=120, unique=True, null=True, blank=True)  # set for imported people
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    consent = models.TextField(null=True, blank=True)
    consent_age = models.TextField(null=True, blank=True)
    # The person withdrew from the study: none of their data enters a run, an export or an evaluation after this.
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    lm_familiarity = models.TextField(null=True, blank=True)
    lm_indirect_use = models.TextField(null=True, blank=True)
    lm_direct_use = models.TextField(null=True, blank=True)
    lm_frequency_use = models.TextField(null=True, blank=True)
    self_description = models.TextField(null=True, blank=True)
    system_string = models.TextField(null=True, blank=True)
    age = models.TextField(null=True, blank=True)
    gender = models.TextField(null=True, blank=True)
    employment_status = models.TextField(null=True, blank=True)
    education = models.TextField(null=True, blank=True)
    marital_status = models.TextField(null=True, blank=True)
    english_proficiency = models.TextField(null=True, blank=True)
    study_id = models.TextField(null=True, blank=True)
    study_locale = models.TextField(null=True, blank=True)
    religion = models.JSONField(null=True, blank=True)
    ethnicity = models.JSONField(null=True, blank=True)
    location = models.JSONField(null=True, blank=True)
    lm_usecases = models.JSONField(null=True, blank=True)
    stated_prefs = models.JSONField(null=True, blank=True)
    order_lm_usecases = models.JSONField(null=True, blank=True)
    order_stated_prefs = models.JSONField(null=True, blank=True)
    extra = models.JSONField(default=dict, blank=True)  # every other PRISM field exactly as read

    def __str__(self) -> str:
        return f"profile of {self.user_id}"

    @property
    def is_complete(self) -> bool:
        return self.completed_at is not None


class SyntheticPersona(models.Model):
    """The hidden preference profile of a simulated participant, kept so that
    evaluation can use the rule that produced the ratings as the judge."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="synthetic")
    population = models.CharField(max_length=120)
    seed = models.BigIntegerField()
    group = models.CharField(max_length=120, blank=True)
    hidden_profile = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["population", "user_id"]

    def __str__(self) -> str:
        return f"{self.population}/{self.user_id}"


class VectorFit(models.Model):
    """One refit of a person's vectors on a model version (fast fit, LoRA frozen).

    The fitted (T, H) tensor lives in a safetensors file under ARTIFACTS_DIR
    (``path``, relative); serving uses the newest done row for the person and
    the active run, so a refit reaches chat without a restart.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="vector_fits")
    run = models.ForeignKey("trainer.TrainingRun", on_delete=models.CASCADE, related_name="vector_fits")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    pairs_total = models.PositiveIntegerField()  # the person's pair count when the fit was asked for
    pairs_used = models.PositiveIntegerField(default=0)
    path = models.CharField(max_length=300, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    losses = models.JSONField(default=list, blank=True)  # first and last full-batch loss
    # Held-out-free check against the person's onboarding vectors, on all their pairs: the fit serves only when it
    # ranks them better (accuracy, then mean loss); otherwise it is kept, marked, and the quick vectors stay.
    ranking = models.JSONField(default=dict, blank=True)  # {"fit": [accuracy, loss], "onboarding": [...]}
    outranked = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)  # when a worker claimed it
    worker = models.CharField(max_length=200, blank=True)  # the worker that claimed it (its Celery name)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["user", "run", "status"])]

    def __str__(self) -> str:
        return f"fit {self.pk} of {self.user_id} on run {self.run_id} ({self.status})"


class Onboarding(models.Model):
    """A newcomer's first comparisons on a version: what they were asked and answered, and where that places them
    among the people the version was trained on (coordinates along its onboarding pool's directions, with their
    covariance). Each answer is also kept as a normal pair (a one-turn onboarding conversation)."""

    class Status(models.TextChoices):
        ASKING = "asking", "Asking"
        FINISHED = "finished", "Finished"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="onboardings")
    run = models.ForeignKey("trainer.TrainingRun", on_delete=models.CASCADE, related_name="onboardings")
    strategy = models.CharField(max_length=16)  # adaptive | random (ONBOARDING_STRATEGY when it began)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ASKING)
    asking = models.CharField(max_length=120, blank=True)  # the key of the question shown now
    a_first = models.BooleanField(default=True)  # whether reply a of the question shown now is shown on the left
    answers = models.JSONField(default=list, blank=True)  # [{"key", "a_better", "seconds"}], in order
    skipped = models.JSONField(default=list, blank=True)  # keys
    coordinates = models.JSONField(default=list, blank=True)  # the estimate's mean (k,)
    covariance = models.JSONField(default=list, blank=True)  # (k, k)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["user", "run"], name="onboarding_once_per_version")]

    def __str__(self) -> str:
        return f"onboarding of {self.user_id} on run {self.run_id} ({len(self.answers)} answers)"


class StudyText(models.Model):
    """What a participant reads before taking part: the study's introduction and its consent statement (one row,
    edited by staff in the admin; Markdown)."""

    introduction = models.TextField(default=(
        "This study collects how people like a language model to answer, so that a model can learn to answer "
        "each person the way they prefer.\n\n"
        "1. **Your profile**: a short survey about you and what you want from a language model (5 minutes).\n"
        "2. **Conversations**: you talk with the model. Each time it offers several replies; you rate each from "
        "1 (terrible) to 100 (perfect), and the one you rate highest continues the conversation.\n"
        "3. **Chat with your model**: once a model has been trained on everyone's ratings, it answers you with "
        "your own settings, and you can compare it with the general one.\n\n"
        "Conversations come in three kinds: *unguided* (talk about anything), *values guided* (ask about "
        "something where your values or beliefs shape the answer you want) and *controversy guided* (ask "
        "about a topic people disagree on)."))
    consent = models.TextField(default=(
        "Your answers and ratings are stored with a pseudonymous id and used to train and evaluate models. "
        "Do not write anything that identifies you or anyone else. You may stop at any time; ask the study's "
        "staff to delete your data."))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "study introduction and consent"
        verbose_name_plural = "study introduction and consent"

    def __str__(self) -> str:
        return "Study introduction and consent"

    @classmethod
    def current(cls) -> "StudyText":
        """The study text staff saved, or the default one (unsaved: reading a page writes nothing)."""
        return cls.objects.order_by("pk").first() or cls()
