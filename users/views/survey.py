from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

from users import collection, prism_wording, selectors
from users.forms import SurveyForm


@login_required
def survey(request):
    profile = selectors.profile_for(request.user)
    form = SurveyForm(request.POST or None, profile=profile)
    if request.method == "POST" and form.is_valid():
        try:
            collection.survey_save(user=request.user, **form.answers())
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Thank you: your profile is saved. You can change it at any time.")
            target = request.GET.get("next", "")
            safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()})
            return redirect(target if target and safe else "collect_home")
    return render(request, "collect/survey.html", {
        "form": form, "profile": profile, "wording": prism_wording,
    }, status=422 if form.errors else 200)
