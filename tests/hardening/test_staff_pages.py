"""Staff pages turn a participant away with a page that says whom they are for and leads home, and send a
visitor who is not logged in to the site's own login (never to the admin's)."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

DATASET_PAGES = ["dataset", "dataset_import", "browse_conversations", "browse_pairs", "raters"]


@pytest.mark.parametrize("name", DATASET_PAGES)
def test_a_participant_is_told_the_page_is_for_staff_and_led_home(client, owner, name):
    client.force_login(owner)
    response = client.get(reverse(name))
    assert response.status_code == 403
    page = response.content.decode()
    assert "This page is for the study's staff" in page
    assert f'<a href="{reverse("home")}">Back to your home page</a>' in page


@pytest.mark.parametrize("name", DATASET_PAGES)
def test_a_visitor_who_is_not_logged_in_is_sent_to_the_sites_login_and_back(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={reverse(name)}"


def test_a_participant_cannot_import_through_the_staff_page(client, owner):
    client.force_login(owner)
    assert client.post(reverse("dataset_import"), {}).status_code == 403


@pytest.mark.parametrize("name", DATASET_PAGES)
def test_staff_open_the_dataset_pages(client, staff, name):
    client.force_login(staff)
    assert client.get(reverse(name)).status_code == 200


def test_the_decorator_lets_only_active_staff_through(rf, owner, staff):
    from django.contrib.auth.models import AnonymousUser

    from alignment_site.access import staff_required

    view = staff_required(lambda request: "opened")
    for user, expected in ((staff, "opened"), (owner, 403), (AnonymousUser(), 302)):
        request = rf.get("/staff/somewhere/")
        request.user = user
        answer = view(request)
        assert (answer if isinstance(answer, str) else answer.status_code) == expected, user
    staff.is_active = False
    request = rf.get("/staff/somewhere/")
    request.user = staff
    assert view(request).status_code == 403
