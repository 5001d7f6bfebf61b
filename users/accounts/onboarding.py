"""A participant's way through the study: the introduction and consent, the profile survey, then
``COLLECTION_TARGET`` PRISM conversations; the next step is pointed to on every participant page until the
target is reached, and a thank-you follows."""

from __future__ import annotations

from dataclasses import dataclass, replace

from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from users.collection.selectors import progress_for
from users.models import Profile

CONSENT_GIVEN = "Yes, I consent to take part in this study"
# The pages where a step is being done, by URL name: the pointer would only link to where the person already is
# (a form shown again with its errors has the address it was sent to; a conversation is the step itself).
HERE = {
    "consent": {"study_intro"},
    "survey": {"survey"},
    "questions": {"onboarding"},
    "conversations": {"collect_home", "collect_start", "collect_detail", "collect_rate", "collect_send",
                      "collect_end"},
}


@dataclass(frozen=True)
class Step:
    key: str  # consent | survey | questions | conversations | done
    text: str
    url: str
    done: int = 0
    target: int = 0
    here: bool = False  # the page shown is where this step is done (the pointer, a link to it, is left out)


def consent_given(user) -> bool:
    """The person agreed to take part and has not withdrawn."""
    return Profile.objects.filter(user=user, consent__istartswith="yes", withdrawn_at__isnull=True).exists()


def consent_give(*, user) -> Profile:
    """Record that the person agrees to take part (again, after a withdrawal: from now on)."""
    with transaction.atomic():
        profile, _ = Profile.objects.select_for_update().get_or_create(user=user)
        if not (profile.consent or "").lower().startswith("yes") or profile.withdrawn_at is not None:
            profile.consent = CONSENT_GIVEN
            profile.consent_age = f"given on this site on {timezone.now():%Y-%m-%d}"
            profile.withdrawn_at = None
            profile.save(update_fields=["consent", "consent_age", "withdrawn_at", "updated_at"])
    return profile


def withdraw(*, user) -> Profile:
    """The person leaves the study: from now on none of their data enters a run, an export for training or an
    evaluation (``CONSENTED``); what they gave stays theirs to download, and the versions trained on it before
    say so on their run pages. Their chat, compare and collection pages close until they agree again."""
    with transaction.atomic():
        profile, _ = Profile.objects.select_for_update().get_or_create(user=user)
        if profile.withdrawn_at is None:
            profile.withdrawn_at = timezone.now()
            profile.save(update_fields=["withdrawn_at", "updated_at"])
    return profile


def next_step(user) -> Step:
    """Where this participant goes next."""
    profile = Profile.objects.filter(user=user).only("consent", "completed_at").first()
    if profile is None or not profile.consent:
        return Step("consent", "Read what the study is about and agree to take part.", reverse("study_intro"))
    if profile.completed_at is None:
        return Step("survey", "Fill in your profile survey (about 5 minutes).", reverse("survey"))
    from users.newcomer.selectors import onboarding_due

    if onboarding_due(user):
        return Step("questions", "Answer a few quick comparisons, so that the model learns your taste (about 2 "
                                 "minutes).", reverse("onboarding"))
    progress = progress_for(user)
    done, target = progress["done"], progress["target"]
    if done < target:
        return Step("conversations", f"Hold conversation {done + 1} of {target}: rate the model's replies.",
                    reverse("collect_home"), done, target)
    return Step("done", f"Thank you: you have finished all {target} conversations. You can keep chatting with "
                        "the model, and compare it once a version trained on everyone's ratings is active.",
                reverse("chat_list"), done, target)


def next_step_context(request) -> dict:
    """Template context: the next step of a logged-in participant (not staff), worked out only when a page
    shows it (not for the htmx fragments that render without the base layout)."""

    def shown() -> Step | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or user.is_staff:
            return None
        step = next_step(user)
        if step.key == "done":  # the thank-you on the pages about taking part, not on every page for ever
            return replace(step, here=request.path not in (reverse("home"), reverse("collect_home")))
        match = getattr(request, "resolver_match", None)  # None on a page answered before URL routing
        return replace(step, here=match is not None and match.url_name in HERE[step.key])

    return {"next_step": SimpleLazyObject(shown)}
