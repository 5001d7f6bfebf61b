"""Sign-up and the participant's home page (login and logout are Django's own views)."""

from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from users.accounts.forms import SignupForm
from users.conversations.selectors import conversations_for


def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


@login_required
def home(request):
    conversations = list(conversations_for(request.user)[:20])
    return render(request, "home.html", {"conversations": conversations})
