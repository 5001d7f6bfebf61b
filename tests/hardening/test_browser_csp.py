"""The Content-Security-Policy holds in a real browser: the pages run with no inline script and no eval,
so Chromium reports no violation (and reports one when an inline script is slipped in), and the behaviour
that used to live in inline handlers still works."""

import pytest

from tests.personas import login

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def strict_page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 768})  # the site's CSP enforced
    page = context.new_page()
    page.set_default_timeout(30_000)
    violations = []
    page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
    page.violations = violations
    yield page
    context.close()


def test_pages_load_with_no_policy_violation_and_sliders_still_show_their_value(strict_page, owner, staff,
                                                                                asgi_server):
    page = strict_page
    response = page.goto(asgi_server + "/login/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    login(page, asgi_server, owner.username)
    for path in ("/", "/chat/", "/compare/", "/collect/", "/survey/"):
        page.goto(asgi_server + path)
        page.wait_for_load_state("networkidle")
    slider = page.locator("input[type=range]").first
    slider.fill("83")
    assert page.locator(f"output[for='{slider.get_attribute('id')}']").inner_text() == "83"
    page.click("text=Log out")
    page.wait_for_url("**/login/")
    login(page, asgi_server, staff.username)
    for path in ("/staff/runs/", "/staff/runs/new/", "/staff/dataset/", "/staff/queue/", "/staff/status/"):
        page.goto(asgi_server + path)
        page.wait_for_load_state("networkidle")
    assert page.violations == []

    # And the watch above would have seen one: an inline script slipped into the page is refused and reported.
    with page.expect_console_message(lambda m: "Content Security Policy" in m.text, timeout=10_000) as caught:
        page.evaluate("() => { const s = document.createElement('script');"
                      " s.textContent = 'window.injected = 1'; document.body.append(s); }")
    assert "inline script" in caught.value.text and page.violations == [caught.value.text]
    assert page.evaluate("() => window.injected") is None
