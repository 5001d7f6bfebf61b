"""Demo accounts: made once with DEBUG on, with a generated password printed once, never reset."""

import io
import re

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def run(**options) -> str:
    out = io.StringIO()
    call_command("create_demo_accounts", stdout=out, **options)
    return out.getvalue()


def test_with_debug_on_they_are_made_with_a_generated_password_printed_once(settings):
    settings.DEBUG = True
    out = run()
    passwords = dict(re.findall(r"username: (\w+)\s+password: (\S+)", out))
    assert set(passwords) == {"staff", "participant"}
    assert "staff-demo-pass" not in out and passwords["staff"] != passwords["participant"]
    assert authenticate(username="staff", password=passwords["staff"]).is_superuser
    assert not authenticate(username="participant", password=passwords["participant"]).is_staff


def test_a_second_start_resets_nothing(settings):
    settings.DEBUG = True
    first = dict(re.findall(r"username: (\w+)\s+password: (\S+)", run()))
    staff = get_user_model().objects.get(username="staff")
    staff.set_password("the-owner-changed-it-9")
    staff.save()
    second = run()
    assert "password:" not in second and "exists" in second
    assert authenticate(username="staff", password="the-owner-changed-it-9") is not None
    assert authenticate(username="participant", password=first["participant"]) is not None


def test_an_existing_account_of_that_name_is_never_touched(settings):
    settings.DEBUG = True
    get_user_model().objects.create_user("staff", password="somebody-elses-1")
    run()
    user = get_user_model().objects.get(username="staff")
    assert not user.is_staff and user.check_password("somebody-elses-1")


def test_with_debug_off_none_are_made_unless_asked(settings):
    settings.DEBUG = False
    assert "DEBUG is off" in run()
    assert not get_user_model().objects.filter(username__in=["staff", "participant"]).exists()
    run(even_without_debug=True)
    assert get_user_model().objects.filter(username__in=["staff", "participant"]).count() == 2
