"""Who may open a page. Staff pages answer a participant with a plain 403 page that says whom the page is for
(Django's ``staff_member_required`` sends them to the admin's login instead, which reads as if they had to log in
again); a visitor who is not logged in goes to the site's own login and comes back afterwards."""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render


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
