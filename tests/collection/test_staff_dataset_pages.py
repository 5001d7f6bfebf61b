"""The staff dataset pages name a person one way (the id the exports and the training data carry: web-<username>,
or an imported person's PRISM id), and Browse pages its tables from above and below."""

import re

import pytest
from django.urls import reverse

from tests.factories import person, rated_conversations

pytestmark = pytest.mark.django_db


def person_cells(page: str) -> set[str]:
    """The first cell of every row of the page's table."""
    return set(re.findall(r"<tr><td>([^<]+)</td>", page))


def test_a_person_has_the_same_id_on_the_dataset_page_and_when_browsing(client, staff):
    from tests.collection.test_prism_io import CONVERSATION, SURVEY, jsonl
    from users.prism.importer import prism_import

    rated_conversations(person("synth-1"), n=2)
    prism_import(files={"survey": jsonl(SURVEY), "conversations": jsonl(CONVERSATION)})  # PRISM's user7
    client.force_login(staff)
    dataset = person_cells(client.get(reverse("dataset")).content.decode())
    conversations = person_cells(client.get(reverse("browse_conversations")).content.decode())
    pairs = person_cells(client.get(reverse("browse_pairs")).content.decode())
    assert {"web-synth-1", "user7"} <= dataset
    assert conversations == {"web-synth-1", "user7"}
    assert pairs <= conversations and "web-synth-1" in pairs


@pytest.mark.parametrize("typed", ["web-synth-1", "synth-1", "SYNTH"])
def test_browse_finds_a_person_by_the_id_it_shows_or_their_username(client, staff, typed):
    rated_conversations(person("synth-1"), n=2)
    rated_conversations(person("other"), n=1)
    client.force_login(staff)
    page = client.get(reverse("browse_conversations"), {"person": typed}).content.decode()
    assert "2 found" in page and person_cells(page) == {"web-synth-1"}


def test_browse_has_its_paging_links_above_and_below_the_table(client, staff):
    rated_conversations(person("tea"), n=55)
    client.force_login(staff)
    for name in ("browse_conversations", "browse_pairs"):
        page = client.get(reverse(name), {"person": "tea"}).content.decode()
        before, after = page.split("</table>")
        assert "?person=tea&page=2" in before.split("<table")[0] and "?person=tea&page=2" in after, name
    single = client.get(reverse("browse_conversations"), {"person": "nobody"}).content.decode()
    assert single.count("0 found") == 1  # one page: the count once, above the table
