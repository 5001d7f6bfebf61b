"""Sign-up: a username and a password; names kept for imported PRISM participants are refused."""

from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError

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
