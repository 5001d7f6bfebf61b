"""The profile survey (PRISM's survey.jsonl for this site's own participants): writes and the completion check."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from users.models import SCORE_MAX, SCORE_MIN, Profile, is_score
from users.prism import wording

SURVEY_TEXT_FIELDS = ("lm_familiarity", "self_description", "system_string", "age", "gender",
                      "employment_status", "education", "english_proficiency")


def survey_save(*, user, stated_prefs: dict[str, int], reside_country: str = "", **answers: str) -> Profile:
    """Create or update the person's profile survey; the first save marks it complete."""
    unknown = set(answers) - set(SURVEY_TEXT_FIELDS)
    if unknown:
        raise TypeError(f"unknown survey fields: {sorted(unknown)}")
    dims = [d for d, _ in wording.STATED_PREFS]
    for dim in dims:
        value = stated_prefs.get(dim)
        if not is_score(value):
            raise ValidationError(f"Rate '{dim}' from {SCORE_MIN} to {SCORE_MAX}.")
    if not (answers.get("self_description") or "").strip():
        raise ValidationError("Describe your values in a few sentences first.")
    with transaction.atomic():
        profile, _ = Profile.objects.select_for_update().get_or_create(user=user)
        for field in SURVEY_TEXT_FIELDS:
            if field in answers:
                setattr(profile, field, (answers[field] or "").strip() or None)
        # Keep any dimension PRISM has that the form does not ask (other, other_text).
        profile.stated_prefs = {**(profile.stated_prefs or {}), **{d: stated_prefs[d] for d in dims}}
        location = dict(profile.location or {})
        location["reside_country"] = reside_country.strip() or None
        profile.location = location
        if profile.completed_at is None:
            profile.completed_at = timezone.now()
        profile.save()
    return profile


def survey_is_complete(user) -> bool:
    return Profile.objects.filter(user=user, completed_at__isnull=False).exists()
