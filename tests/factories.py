"""Rated conversations for tests: each turn has a chosen and a rejected reply."""

from django.contrib.auth import get_user_model

from users.accounts.onboarding import CONSENT_GIVEN
from users.models import Conversation, Profile, Reply, SyntheticPersona, Turn

SHORT = "Sleep at the same time every night."
LONG = ("Keeping a regular schedule matters most: go to bed and get up at the same time every day, "
        "keep the bedroom dark and cool, avoid screens for an hour before bed, and skip caffeine after noon.")
PROMPTS = ["How can I sleep better?", "How do I start running?", "Tips for learning a language?",
           "How do I save money?", "How do I focus at work?", "How should I cook rice?"]


def person(username: str, *, group: str | None = None, prefs: dict | None = None):
    """A participant; with a ``group``, a simulated one whose hidden rule weighs ``prefs`` (dimension -> weight)."""
    user = get_user_model().objects.create_user(username=username, password="pw-" + username + "-123")
    Profile.objects.update_or_create(user=user, defaults={"completed_at": user.date_joined, "consent": CONSENT_GIVEN})
    if group:
        SyntheticPersona.objects.create(user=user, population="tests", seed=0, group=group,
                                        hidden_profile={"group": group, "prefs": prefs or {}, "noise": 0.0})
    return user


def rated_conversations(user, *, n: int, prefers_short: bool = True) -> None:
    for i in range(n):
        conversation = Conversation.objects.create(user=user, kind=Conversation.Kind.UNGUIDED,
                                                   title=PROMPTS[i % len(PROMPTS)])
        turn = Turn.objects.create(conversation=conversation, index=0, user_message=PROMPTS[i % len(PROMPTS)])
        good, bad = (SHORT, LONG) if prefers_short else (LONG, SHORT)
        Reply.objects.create(turn=turn, position=0, content=good, status=Reply.Status.DONE, score=90, chosen=True)
        Reply.objects.create(turn=turn, position=1, content=bad, status=Reply.Status.DONE, score=20)


def population(*, people: int = 6, conversations: int = 3) -> list:
    users = []
    for i in range(people):
        minority = i % 3 == 2
        user = person(f"sim{i}", group="B" if minority else "A", prefs={"length": 1.0 if minority else -1.0})
        rated_conversations(user, n=conversations, prefers_short=not minority)
        users.append(user)
    return users
