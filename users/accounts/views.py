"""Sign-up, the study's introduction and consent, and the participant's home page (login and logout are
Django's own views)."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from users.accounts import onboarding, throttle
from users.accounts.forms import SignupForm
from users.conversations.selectors import conversations_for
from users.models import Profile, StudyText

MY_DOWNLOADS = [
    ("survey", "your profile survey"), ("conversations", "your rated conversations (PRISM format)"),
    ("utterances", "every reply you rated, one per line (PRISM format)"), ("pairs", "the preference pairs your ratings make"),
    ("chats", "your chats and blind comparisons"),
]


def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    address = request.META.get("REMOTE_ADDR", "")
    if request.method == "POST":
        wait = throttle.signup_wait_seconds(address)
        if wait:  # scripted accounts pouring ratings into every run: a few an hour per address
            minutes = -(-wait // 60)
            form.add_error(None, f"{settings.SIGNUPS_PER_ADDRESS} accounts were made from this address in the last "
                                 f"hour, the most allowed. Try again in {minutes} minute{'s' if minutes != 1 else ''}, "
                                 "or ask the study's staff for an account.")
            return render(request, "registration/signup.html", {"form": form}, status=429)
        if form.is_valid():
            user = form.save()
            throttle.record_signup(address)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("study_intro")
    return render(request, "registration/signup.html", {"form": form})


def home(request):
    """A participant's conversations; a visitor who is not logged in reads what the study is and how to join."""
    if not request.user.is_authenticated:
        return render(request, "welcome.html", {"study": StudyText.current(),
                                                "target": settings.COLLECTION_TARGET})
    conversations = list(conversations_for(request.user)[:20])
    return render(request, "home.html", {"conversations": conversations})


@login_required
def study_intro(request):
    """What the study is and what taking part means; agreeing records consent and leads to the survey."""
    given = onboarding.consent_given(request.user)
    if request.method == "POST":
        if request.POST.get("agree") != "yes":
            messages.error(request, "Tick the box to agree, or leave the study: nothing is recorded until you do.")
        else:
            onboarding.consent_give(user=request.user)
            messages.success(request, "Thank you for taking part. Next: your profile survey.")
            return redirect("survey")
    return render(request, "study.html", {"study": StudyText.current(), "given": given},
                  status=422 if request.method == "POST" else 200)


@login_required
def my_data(request):
    """Everything stored about the person, to download, and the way out of the study."""
    profile = Profile.objects.filter(user=request.user).first()
    if request.method == "POST":
        if request.POST.get("withdraw") != "yes":
            messages.error(request, "Tick the box to confirm that you withdraw: nothing was changed.")
        else:
            onboarding.withdraw(user=request.user)
            messages.success(request, "You have withdrawn from the study. None of your data goes into any model "
                                      "trained, export made or evaluation run from now on.")
            return redirect("my_data")
    return render(request, "my_data.html", {"profile": profile, "downloads": MY_DOWNLOADS},
                  status=422 if request.method == "POST" else 200)
