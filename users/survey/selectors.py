"""The profile survey: reads."""

from users.models import Profile


def profile_for(user):
    return Profile.objects.filter(user=user).first()
