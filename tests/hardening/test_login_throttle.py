"""Logins are throttled per account and per address, on the site's form and the admin's, with a message
that says how long to wait; a good login clears the account's count."""

import pytest
from django.urls import reverse

from tests.personas import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_counts(settings, test_redis):
    settings.LOGIN_FAILURES_PER_ACCOUNT = 5
    settings.LOGIN_FAILURES_PER_ADDRESS = 20
    settings.LOGIN_LOCKOUT_SECONDS = 900
    test_redis.delete(*test_redis.keys("login-*") or ["none"])
    yield
    test_redis.delete(*test_redis.keys("login-*") or ["none"])  # the suite's people log in again later


def attempt(client, username, password, url="login", address="10.9.8.7"):
    return client.post(reverse(url), {"username": username, "password": password}, REMOTE_ADDR=address)


def test_after_five_wrong_passwords_even_the_right_one_waits(client, owner):
    for _ in range(5):
        assert attempt(client, owner.username, "wrong-guess").status_code == 200
    response = attempt(client, owner.username, PASSWORD)
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    assert "Too many failed logins for this account or from this address. Try again in 15 minutes" in \
        response.content.decode()


def test_the_account_is_throttled_whatever_the_case_of_its_name(client, owner):
    for _ in range(5):
        attempt(client, owner.username.upper(), "wrong-guess", address=f"10.0.0.{_}")
    assert "Too many failed logins" in attempt(client, owner.username, PASSWORD, address="10.1.1.1").content.decode()


def test_one_address_trying_many_accounts_is_throttled(client, owner, settings):
    settings.LOGIN_FAILURES_PER_ADDRESS = 3
    for name in ("x1", "x2", "x3"):
        attempt(client, name, "wrong-guess")
    assert "Too many failed logins" in attempt(client, owner.username, PASSWORD).content.decode()
    assert attempt(client, owner.username, PASSWORD, address="10.2.2.2").status_code == 302  # another address


def test_a_good_login_clears_the_count(client, owner):
    for _ in range(4):
        attempt(client, owner.username, "wrong-guess")
    assert attempt(client, owner.username, PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        attempt(client, owner.username, "wrong-guess")
    assert attempt(client, owner.username, PASSWORD).status_code == 302


def test_the_admin_login_is_throttled_too(client, staff):
    for _ in range(5):
        attempt(client, staff.username, "wrong-guess", url="admin:login")
    response = attempt(client, staff.username, PASSWORD, url="admin:login")
    assert response.status_code == 200 and "Too many failed logins" in response.content.decode()


def test_an_attackers_wrong_guesses_do_not_lock_the_owner_out_from_an_address_they_logged_in_from(client, owner):
    assert attempt(client, owner.username, PASSWORD, address="10.1.1.1").status_code == 302  # the owner, at home
    client.logout()
    for n in range(5):
        attempt(client, owner.username, "wrong-guess", address=f"10.6.6.{n}")  # someone else, elsewhere
    stranger = attempt(client, owner.username, PASSWORD, address="10.6.6.9")
    assert stranger.status_code == 200 and "Too many failed logins" in stranger.content.decode()
    assert attempt(client, owner.username, PASSWORD, address="10.1.1.1").status_code == 302


def test_a_known_address_still_has_its_own_limit(client, owner, settings):
    settings.LOGIN_FAILURES_PER_ADDRESS = 3
    assert attempt(client, owner.username, PASSWORD, address="10.1.1.1").status_code == 302
    client.logout()
    for name in ("x1", "x2", "x3"):
        attempt(client, name, "wrong-guess", address="10.1.1.1")
    assert "Too many failed logins" in attempt(client, owner.username, PASSWORD, address="10.1.1.1").content.decode()
