"""A newcomer's first pages: the home page tells a visitor what the study is and how to join, and the sign-up
form shows its password rules before the first try and keeps what it can when a try is refused."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from users.models import StudyText

pytestmark = pytest.mark.django_db


def test_a_visitor_who_is_not_logged_in_reads_what_the_study_is_and_finds_sign_up_and_log_in(client, settings):
    settings.COLLECTION_TARGET = 6
    StudyText.objects.update_or_create(pk=1, defaults={"introduction": "We study **tea** preferences."})
    response = client.get(reverse("home"))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="id_password"' not in page  # not a bare login form
    steps = page.split('id="welcome-steps"')[1].split("</ol>")[0]
    assert "short survey" in steps and "about 6 conversations" in steps and "adapts to you" in steps
    main = page.split("<main>")[1]
    assert f'href="{reverse("signup")}"' in main and f'href="{reverse("login")}"' in main
    assert "We study <strong>tea</strong> preferences." in page  # the study's own text, as staff set it


def test_a_logged_in_participant_still_gets_their_home_page(owner_client):
    page = owner_client.get(reverse("home")).content.decode()
    assert "Hello, alice" in page and 'id="welcome-steps"' not in page


def test_the_sign_up_page_shows_the_password_rules_before_the_first_try(client):
    page = client.get(reverse("signup")).content.decode()
    rules = page.split('id="id_password1_helptext"')[1].split("</div>")[0]
    assert "at least 8 characters" in rules and "at least 5 different characters" in rules
    assert 'aria-describedby="id_password1_helptext"' in page  # read out with the field
    assert 'id="signup-retry"' not in page


def test_a_refused_sign_up_keeps_the_username_and_says_to_enter_the_password_again(client):
    response = client.post(reverse("signup"), {"username": "newcomer", "password1": "short",
                                               "password2": "short"})
    page = response.content.decode()
    assert response.status_code == 200 and not get_user_model().objects.filter(username="newcomer").exists()
    assert 'name="username" value="newcomer"' in page
    retry = page.split('id="signup-retry"')[1].split("</p>")[0]
    assert "password fields were cleared" in retry and "enter your password again" in retry
    assert 'id="id_password1_helptext"' in page  # the rules are still there to follow
