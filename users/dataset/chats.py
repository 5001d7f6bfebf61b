"""A person's chats and blind comparisons as JSON Lines (the PRISM files hold only the rated collection
conversations): one line per conversation, its turns with every reply, its rating and how it was served."""

from __future__ import annotations

import json
from typing import Iterator

from django.db.models import Prefetch

from users.models import Conversation, Reply, Turn
from users.prism.ids import exported_user_id

KINDS = (Conversation.Kind.CHAT, Conversation.Kind.COMPARE)


def chat_export_lines(*, users=None, chunk_size: int = 100) -> Iterator[str]:
    qs = (Conversation.objects.filter(kind__in=KINDS).select_related("user__profile")
          .prefetch_related(Prefetch("turns", queryset=Turn.objects.order_by("index").prefetch_related(
              Prefetch("replies", queryset=Reply.objects.order_by("position")))))
          .order_by("pk"))
    if users is not None:
        qs = qs.filter(user__in=users)
    for conversation in qs.iterator(chunk_size=chunk_size):
        record = {
            "user_id": exported_user_id(conversation.user, getattr(conversation.user, "profile", None)),
            "conversation_id": conversation.pk, "kind": conversation.kind, "title": conversation.title,
            "created_at": conversation.created_at.isoformat(),
            "turns": [{"index": turn.index, "user_message": turn.user_message,
                       "replies": [{"position": r.position, "source": r.source, "model_name": r.model_name,
                                    "status": r.status, "content": r.content, "score": r.score, "chosen": r.chosen,
                                    "serving": r.serving} for r in turn.replies.all()]}
                      for turn in conversation.turns.all()],
        }
        yield json.dumps(record, ensure_ascii=False) + "\n"
