"""Conversations as PRISM records them: a conversation is a list of turns; a
turn is one user message and one or more candidate replies, of which one is
chosen to continue. A plain chat is the same thing with one reply per turn."""

from django.conf import settings
from django.db import models


class Conversation(models.Model):
    class Kind(models.TextChoices):
        CHAT = "chat", "Chat"
        UNGUIDED = "unguided", "Unguided"
        VALUES = "values guided", "Values guided"
        CONTROVERSY = "controversy guided", "Controversy guided"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.CHAT)
    title = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["user", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Turn(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveIntegerField()  # PRISM's `turn`, from 0
    user_message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

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
    token_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["turn", "position"]
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
    def stream_key(self) -> str:
        return f"reply:{self.pk}:stream"

    @property
    def stop_key(self) -> str:
        return f"reply:{self.pk}:stop"
