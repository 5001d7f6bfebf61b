"""Sign-up (names kept for imported PRISM participants are refused) and the throttled login forms."""

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import ValidationError

from users.accounts import throttle
from users.models import Profile
from users.prism.ids import IMPORTED_PREFIX, exported_id


class SignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)

    def clean_username(self):
        # The field has already normalised the name to NFKC (full-width letters become plain ones);
        # Django's check compares it case-insensitively and, when taken, records the error and gives None.
        name = super().clean_username()
        if name is None:
            return name
        if name.casefold().startswith(IMPORTED_PREFIX):
            raise ValidationError(f"Names starting with “{IMPORTED_PREFIX}” are kept for imported PRISM "
                                  "participants; please pick another.")
        if Profile.objects.filter(prism_user_id=exported_id(None, name)).exists():
            raise ValidationError("This name is taken by an imported participant; please pick another.")
        return name


class ThrottledLogin:
    """For Django's login forms (the site's and the admin's): refuse while the account or the address has
    too many recent failures, count each wrong password, and clear the account's count on success."""

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = self.request.META.get("REMOTE_ADDR", "") if self.request else ""
        wait = throttle.wait_seconds(username, address)
        if wait:
            minutes = -(-wait // 60)
            raise ValidationError(
                f"Too many failed logins for this account or from this address. Try again in {minutes} "
                f"minute{'s' if minutes != 1 else ''}, or ask staff to reset your password.", code="throttled")
        try:
            cleaned = super().clean()
        except ValidationError as exc:
            if any(error.code == "invalid_login" for error in exc.error_list):
                throttle.record_failure(username, address)
            raise
        throttle.clear(username, address)
        return cleaned


class LoginForm(ThrottledLogin, AuthenticationForm):
    pass


class AdminLoginForm(ThrottledLogin, AdminAuthenticationForm):
    pass
