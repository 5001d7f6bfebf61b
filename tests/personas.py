"""The fixed people of the suite: an owner, an outsider (another participant)
and a staff member."""

import os
import re
from pathlib import Path

import pytest

PASSWORD = "correct-horse-battery"


def _make(username: str, *, staff: bool = False):
    """A staff member, or a participant who has agreed to take part (tests of the consent step sign up anew)."""
    from django.contrib.auth import get_user_model

    from users.accounts.onboarding import consent_give

    user = get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=staff)
    if not staff:
        consent_give(user=user)
    return user


@pytest.fixture
def owner(db):
    return _make("alice")


@pytest.fixture
def outsider(db):
    return _make("mallory")


@pytest.fixture
def staff(db):
    return _make("sam", staff=True)


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright (no browser download)."""
    # Playwright's sync API runs an event loop in this thread; the ORM calls the
    # tests make between page actions are still plain synchronous calls.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    # bypass_csp: Playwright's wait_for_function evaluates strings in the page, which the site's CSP forbids;
    # the policy itself is checked with it on in tests/hardening/test_browser_csp.py.
    context = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)  # a phone-sized window
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


def login(page, base_url: str, username: str, password: str = PASSWORD) -> None:
    page.goto(base_url + "/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/")


def new_chat(page) -> None:
    """Press New chat and wait until the chat page's scripts have run: until then Enter in the message box adds a
    line instead of sending (a loaded machine can take seconds to run them)."""
    page.click("text=New chat")
    page.wait_for_url(re.compile(r"/chat/\d+/$"), wait_until="domcontentloaded")


def screenshot(page, name: str, width: int = 1100, height: int = 800) -> None:
    """The README's pictures, taken where a browser test has brought a page: written to ``$SCREENSHOTS_DIR/name.png``
    when that is set (``SCREENSHOTS_DIR=docs/images ./test.sh -m browser`` refreshes them), at a desktop width."""
    folder = os.environ.get("SCREENSHOTS_DIR")
    if folder:
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)



def join_study(page, base_url: str, username: str, self_description: str) -> None:
    """Sign up from the home page, agree on the study page and save the survey (every slider at 55), as a
    newcomer would; where the survey leads is the caller's to check."""
    from tests.collection.test_browser_collect import set_every_slider

    page.goto(base_url + "/")
    page.click("header >> text=Sign up")
    page.fill("#id_username", username)
    page.fill("#id_password1", "a-long-pass-phrase")
    page.fill("#id_password2", "a-long-pass-phrase")
    page.click("button[type=submit]")
    page.wait_for_url("**/study/")
    page.check("input[name=agree]")
    page.click("text=Agree and continue")
    page.wait_for_url("**/survey/**")
    page.select_option("#id_lm_familiarity", "Somewhat familiar")
    page.fill("#id_self_description", self_description)
    set_every_slider(page.locator("form.survey"), 55)
    page.click("text=Save my profile")
