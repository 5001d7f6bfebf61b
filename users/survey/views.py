"""The profile survey page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

from users.accounts import onboarding
from users.prism import wording
from users.survey.forms import SurveyForm
from users.survey.selectors import profile_for
from users.survey.services import survey_save


@login_required
def survey(request):
    if not onboarding.consent_given(request.user):
        messages.info(request, "First read what the study is about and agree to take part.")
        return redirect("study_intro")
    profile = profile_for(request.user)
    form = SurveyForm(request.POST or None, profile=profile)
    if request.method == "POST" and form.is_valid():
        try:
            survey_save(user=request.user, **form.answers())
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Thank you: your profile is saved. You can change it at any time.")
            target = request.GET.get("next", "")
            safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()})
            if target and safe:
                return redirect(target)
            from users.newcomer.selectors import onboarding_due

            return redirect("onboarding" if onboarding_due(request.user) else "collect_home")
    return render(request, "survey/survey.html", {
        "form": form, "profile": profile, "wording": wording,
    }, status=422 if form.errors else 200)
