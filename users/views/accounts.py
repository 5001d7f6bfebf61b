from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from users import selectors
from users.models import Profile
from users.prism_io import IMPORTED_PREFIX, exported_id


class SignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)

    def clean_username(self):
        name = super().clean_username()
        if name.lower().startswith(IMPORTED_PREFIX):
            raise ValidationError(f"Names starting with “{IMPORTED_PREFIX}” are kept for imported PRISM "
                                  "participants; please pick another.")
        if Profile.objects.filter(prism_user_id=exported_id(None, name)).exists():
            raise ValidationError("This name is taken by an imported participant; please pick another.")
        return name


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
    conversations = list(selectors.conversations_for(request.user)[:20])
    return render(request, "home.html", {"conversations": conversations})
