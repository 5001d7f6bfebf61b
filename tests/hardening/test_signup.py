"""Sign-up refuses a taken name in any case or width with a form error (never a server error), and
refuses passwords that are easy to guess."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

pytestmark = pytest.mark.django_db
GOOD = "plum-Orchard-41"


@pytest.mark.parametrize("name", ["alice", "ALICE", "Alice", "ａｌｉｃｅ", "ＡＬＩＣＥ"])
def test_a_taken_name_in_another_case_or_width_is_a_form_error(client, name):
    get_user_model().objects.create_user("alice", password=GOOD)
    response = client.post(reverse("signup"), {"username": name, "password1": GOOD, "password2": GOOD})
    assert response.status_code == 200
    assert "A user with that username already exists." in response.content.decode()
    assert get_user_model().objects.count() == 1


@pytest.mark.parametrize("password", ["zzzzzzzzzzzz", "12345678901", "abababababab"])
def test_a_password_that_is_easy_to_guess_is_refused(client, password):
    response = client.post(reverse("signup"), {"username": "bob", "password1": password, "password2": password})
    assert response.status_code == 200 and 'class="error"' in response.content.decode()
    assert not get_user_model().objects.filter(username="bob").exists()


def test_a_varied_password_signs_up(client):
    response = client.post(reverse("signup"), {"username": "bob", "password1": GOOD, "password2": GOOD})
    assert response.status_code == 302 and get_user_model().objects.filter(username="bob").exists()


def test_an_address_that_made_too_many_accounts_waits(client, settings, test_redis):
    settings.SIGNUPS_PER_ADDRESS = 2
    test_redis.delete(*test_redis.keys("signups:*") or ["none"])
    try:
        for name in ("bot1", "bot2"):
            assert client.post(reverse("signup"), {"username": name, "password1": GOOD, "password2": GOOD},
                               REMOTE_ADDR="10.7.7.7").status_code == 302
            client.logout()
        refused = client.post(reverse("signup"), {"username": "bot3", "password1": GOOD, "password2": GOOD},
                              REMOTE_ADDR="10.7.7.7")
        assert refused.status_code == 429
        assert "2 accounts were made from this address in the last hour" in refused.content.decode()
        assert not get_user_model().objects.filter(username="bot3").exists()
        assert client.post(reverse("signup"), {"username": "carol", "password1": GOOD, "password2": GOOD},
                           REMOTE_ADDR="10.8.8.8").status_code == 302  # another address
    finally:
        test_redis.delete(*test_redis.keys("signups:*") or ["none"])
