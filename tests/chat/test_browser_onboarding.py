"""Headless Chromium on a phone-sized page: a new participant signs up, consents, fills in the survey, is sent to
the active version's first questions, answers and skips some while their point moves on the map, says "enough",
and their first chat reply is written with the vectors their answers placed them at (recorded on the reply)."""

import pytest

from tests.chat.test_browser_personal import stack  # noqa: F401  (fixture)
from tests.factories import population
from tests.personas import join_study, new_chat
from trainer.models import OnboardingPool
from trainer.pools import pool_request
from trainer.worker import onboarding as pool_worker
from users.models import Conversation, Onboarding, Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def pool(active_run):
    population(people=3, conversations=6)  # the raters whose pairs become the questions
    row = pool_request(run=active_run)
    assert pool_worker.execute(row.pk, worker="train@test") == OnboardingPool.Status.COMPLETED
    return row


def test_a_newcomer_is_placed_by_their_first_answers_and_chats_with_those_vectors(page, pool, stack):  # noqa: F811
    page.set_default_timeout(30_000)
    join_study(page, stack, "newcomer", "Long, thorough answers suit me.")
    page.wait_for_url(stack + "/welcome/questions/")

    assert page.inner_text("#onboarding-progress") == "1 of 10"
    assert page.locator("#onboarding-map circle.me").count() == 1
    before = page.inner_html("#onboarding-map")
    page.click("#pick-left")
    page.wait_for_selector("#onboarding-progress >> text=2 of 10")
    assert page.inner_html("#onboarding-map") != before  # the point moved (or the map around it)
    page.click("#pick-right")
    page.wait_for_selector("#onboarding-progress >> text=3 of 10")
    asked = page.get_attribute("#onboarding-card", "data-key")
    page.click("#onboarding-skip")
    page.wait_for_function(f"document.querySelector('#onboarding-card').dataset.key !== {asked!r}")
    assert page.inner_text("#onboarding-progress") == "3 of 10"  # a skip asks another without counting
    page.click("#onboarding-enough")
    page.wait_for_url(stack + "/chat/")
    onboarding = Onboarding.objects.get(user__username="newcomer")
    assert len(onboarding.answers) == 2 and len(onboarding.skipped) == 1
    assert Conversation.objects.filter(user__username="newcomer", kind="onboarding").count() == 2

    new_chat(page)
    page.fill("#message", "Tell me about tea.")
    page.press("#message", "Enter")
    page.wait_for_selector('.bubble.model[data-status="done"]', timeout=60_000)
    reply = Reply.objects.get(turn__conversation__user__username="newcomer", turn__conversation__kind="chat")
    assert reply.serving["vectors"] == "onboarding" and reply.serving["answers"] == 2
