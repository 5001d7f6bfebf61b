"""Who may open a page. Staff pages answer a participant with a plain 403 page that says whom the page is for
(Django's ``staff_member_required`` sends them to the admin's login instead, which reads as if they had to log in
again); a visitor who is not logged in goes to the site's own login and comes back afterwards."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse


def staff_required(view):
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (user.is_active and user.is_staff):
            return render(request, "staff_only.html", status=403)
        return view(request, *args, **kwargs)

    return wrapped


def participant_required(view):
    """Chat, compare and collection: for people who agreed to take part (and have not withdrawn), and for staff.
    Anyone else is sent to the study's introduction and consent (a form they post is refused with where to go),
    so no conversation is stored from someone who never agreed."""
    from users.accounts.onboarding import consent_given

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if user.is_staff or consent_given(user):
            return view(request, *args, **kwargs)
        where = reverse("study_intro")
        if request.method in ("GET", "HEAD"):
            messages.info(request, "Read what the study is about and agree to take part first.")
            return redirect(where)
        return HttpResponse(f"You have not agreed to take part in the study: read and agree on {where} first.",
                            status=403, content_type="text/plain; charset=utf-8")

    return wrapped
