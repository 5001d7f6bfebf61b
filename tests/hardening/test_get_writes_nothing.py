"""No page writes on GET: every URL of the site, asked with GET by the person it is for, leaves the database as it
was, even with a run and an evaluation whose worker fell silent (failing them is the workers' bookkeeping)."""

from datetime import timedelta

import pytest
from django.apps import apps
from django.core import serializers
from django.urls import URLPattern, URLResolver
from django.utils import timezone

from alignment_site.urls import urlpatterns
from trainer.models import PersonalEvaluation, TrainingRun
from users.models import Conversation, Reply, Turn

pytestmark = pytest.mark.django_db

# Not pages: the SSE stream follows a reply until it ends (its bookkeeping is Redis's); the admin is Django's own.
SKIPPED = {"reply_stream", "login", "logout"}
NOT_STATE = {"sessions.session", "admin.logentry"}


def snapshot() -> str:
    return "".join(serializers.serialize("json", model.objects.order_by("pk"))
                   for model in apps.get_models() if model._meta.label_lower not in NOT_STATE)


def patterns(entries=urlpatterns):
    for entry in entries:
        if isinstance(entry, URLPattern) and entry.name:
            yield entry
        elif isinstance(entry, URLResolver) and not str(entry.pattern).startswith("admin/"):
            yield from patterns(entry.url_patterns)


def test_no_url_writes_to_the_database_on_get(client, staff, owner):
    old = timezone.now() - timedelta(hours=3)
    silent = TrainingRun.objects.create(name="silent", created_by=staff, status=TrainingRun.Status.RUNNING,
                                        worker="train@gone", started_at=old, heartbeat_at=old, total_steps=10)
    done = TrainingRun.objects.create(name="done", created_by=staff, status=TrainingRun.Status.COMPLETED)
    evaluation = PersonalEvaluation.objects.create(run=done, created_by=staff, status=TrainingRun.Status.RUNNING,
                                                   started_at=old, heartbeat_at=old)
    kinds = {kind: Conversation.objects.create(user=owner, kind=kind) for kind in
             (Conversation.Kind.CHAT, Conversation.Kind.COMPARE, Conversation.Kind.UNGUIDED)}
    for conversation in kinds.values():
        turn = Turn.objects.create(conversation=conversation, index=0, user_message="Hi")
        Reply.objects.create(turn=turn, position=0, content="Hello.", status=Reply.Status.DONE, chosen=True)
    reply = Reply.objects.filter(turn__conversation=kinds[Conversation.Kind.CHAT]).get()
    values = {"reply_id": reply.pk, "evaluation_id": evaluation.pk, "name": "pairs", "fmt": "csv"}
    conversation_for = {"chat": Conversation.Kind.CHAT, "compare": Conversation.Kind.COMPARE,
                        "collect": Conversation.Kind.UNGUIDED}

    asked, wrote = [], []
    for pattern in patterns():
        if pattern.name in SKIPPED:
            continue
        route = str(pattern.pattern)
        staff_page = route.startswith("staff/")
        client.force_login(staff if staff_page else owner)
        for run in ([silent, done] if "<int:run_id>" in route else [None]):
            path = route
            for name, converter in (("run_id", "int"), ("conversation_id", "int"), ("reply_id", "int"),
                                    ("evaluation_id", "int"), ("name", "str"), ("fmt", "str")):
                token = f"<{converter}:{name}>"
                if token in path:
                    value = run.pk if name == "run_id" else (
                        kinds[conversation_for[route.split("/")[0]]].pk if name == "conversation_id"
                        else values[name])
                    path = path.replace(token, str(value))
            before = snapshot()
            response = client.get("/" + path)
            if hasattr(response, "streaming_content"):
                b"".join(response.streaming_content)
            asked.append(path)
            if snapshot() != before:
                wrote.append(f"GET /{path} ({pattern.name}, {response.status_code})")
    assert len(asked) > 40
    client.force_login(staff)  # the page still tells what it did not write
    assert "its worker has not reported for 3.0 h" in client.get(f"/staff/runs/{silent.pk}/").content.decode()
    assert not wrote, "pages that wrote on GET: " + "; ".join(wrote)
