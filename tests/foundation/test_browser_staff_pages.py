"""Staff pages on a phone (390 px wide, Chromium): the status table stays inside its card, with commands
shown as code, and Browse's filters keep every label directly above its field."""

import pytest

from tests.personas import login

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]

STATUS_BOXES = """
() => {
  const table = document.querySelector("main table"), card = table.closest(".card");
  return {page: document.documentElement.scrollWidth, view: innerWidth,
          boxRight: table.parentElement.getBoundingClientRect().right, cardRight: card.getBoundingClientRect().right,
          table: table.getBoundingClientRect().width, box: table.parentElement.clientWidth,
          codes: table.querySelectorAll("td code").length, ticks: table.textContent.includes("`")};
}
"""

# For each filter label: how far its field sits from directly below it (0 when it does).
FILTER_BOXES = """
() => [...document.querySelectorAll(".browse-filters label")].map(label => {
  const a = label.getBoundingClientRect(), b = document.getElementById(label.htmlFor).getBoundingClientRect();
  return {label: label.textContent.trim(), dx: Math.abs(b.left - a.left), gap: b.top - a.bottom,
          right: Math.max(a.right, b.right)};
})
"""


def test_the_status_table_fits_a_phone_and_shows_commands_as_code(staff, page, asgi_server):
    login(page, asgi_server, staff.username)
    page.goto(asgi_server + "/staff/status/")
    page.wait_for_selector("main table")
    boxes = page.evaluate(STATUS_BOXES)
    assert boxes["page"] <= boxes["view"], boxes  # nothing spills sideways out of the page
    assert boxes["boxRight"] <= boxes["cardRight"], boxes
    assert boxes["table"] <= boxes["box"] + 1, boxes  # long commands wrap in their cells
    assert boxes["codes"] >= 1 and not boxes["ticks"], boxes


@pytest.mark.parametrize("browse", ["conversations", "pairs"])
def test_browse_filters_keep_each_label_above_its_field_on_a_phone(staff, page, asgi_server, browse):
    login(page, asgi_server, staff.username)
    page.goto(f"{asgi_server}/staff/dataset/{browse}/")
    fields = page.evaluate(FILTER_BOXES)
    width = page.evaluate("innerWidth")
    assert len(fields) == (5 if browse == "pairs" else 4)
    for field in fields:
        assert field["dx"] < 2 and 0 <= field["gap"] < 12, field
        assert field["right"] <= width, field
    assert page.evaluate("document.documentElement.scrollWidth") <= width
