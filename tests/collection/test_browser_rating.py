"""The rating task as a newcomer meets it, on a phone and on a desktop, with the real bundled model writing the
candidates: the walk fails on an unset value stored, a rating control away from its reply, a cut reply without
Continue, or a scale word hidden at phone width."""

import pytest

from tests.collection.conftest import sources  # noqa: F401  (fixture)
from tests.collection.test_browser_collect import set_every_slider, wait_for_replies
from tests.personas import PASSWORD
from users.models import Profile, Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]

# Each slider lies inside its reply's card, and every scale word is on screen (not hidden, not zero-sized).
LAYOUT = """() => {
  const shown = el => { const r = el.getBoundingClientRect(), s = getComputedStyle(el);
                        return r.width > 0 && r.height > 0 && s.display !== 'none' && s.visibility !== 'hidden'; };
  const cards = [...document.querySelectorAll('.candidate.rating')];
  const beyond = cards.map(card => {
    const slider = card.querySelector('input[type=range]');
    if (!slider) return null;
    const c = card.getBoundingClientRect(), s = slider.getBoundingClientRect();
    return Math.max(0, s.bottom - c.bottom, c.top - s.top);
  }).filter(d => d !== null);
  const words = [...document.querySelectorAll('.candidate.rating .scale-end')];
  const hidden = words.filter(w => !shown(w)).map(w => w.textContent);
  const overflow = document.documentElement.scrollWidth - window.innerWidth;
  return {cards: cards.length, beyond, words: words.length, hidden, overflow};
}"""


def check_layout(page, cards: int) -> None:
    found = page.evaluate(LAYOUT)
    assert found["cards"] == cards
    assert found["beyond"] == [0] * len(found["beyond"]) and len(found["beyond"]) == cards, found
    assert found["words"] == 2 * cards and not found["hidden"], found
    assert found["overflow"] <= 0, f"the page is {found['overflow']} px wider than the screen"


def test_a_newcomer_rates_whole_replies_with_a_slider_beside_each_and_stores_only_what_they_set(
        browser, page, sources, generate_worker, asgi_server):  # noqa: F811
    base = asgi_server
    page.set_default_timeout(60_000)
    page.goto(base + "/signup/")
    page.fill("#id_username", "rater")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/study/")
    page.check("input[name=agree]")
    page.click("text=Agree and continue")
    page.wait_for_url("**/survey/**")

    # The survey: nothing set until moved; one left unset is refused, named, and nothing is saved.
    assert page.locator("form.survey .slider-row.unset").count() == 8
    page.select_option("#id_lm_familiarity", "Somewhat familiar")
    page.fill("#id_self_description", "I like short answers.")
    sliders = page.locator("form.survey input[type=range]")
    for i in range(7):
        sliders.nth(i).fill(str(30 + i))
    page.click("text=Save my profile")
    page.wait_for_selector("form.survey .error")
    assert "Not set yet" in page.inner_text("form.survey .slider-row.unset")
    assert Profile.objects.get(user__username="rater").stated_prefs in (None, {})
    sliders.nth(1).press("ArrowRight")  # the keyboard sets a value too: 31 -> 32; the last is still unset
    assert page.locator("form.survey .slider-row.unset").count() == 1
    page.locator("form.survey .slider-row.unset input[type=range]").focus()
    page.keyboard.press("ArrowLeft")
    assert page.locator("form.survey .slider-row.unset").count() == 0
    page.click("text=Save my profile")
    page.wait_for_url(base + "/collect/")
    prefs = Profile.objects.get(user__username="rater").stated_prefs
    assert sorted(prefs.values()) == sorted([30, 32, 32, 33, 34, 35, 36, 49])

    # The first turn: four candidates by the real model, cut at the test's 32-token cap.
    page.select_option("#id_kind", "unguided")
    page.fill("#id_message", "How do I make a good cup of tea?")
    page.click("button:has-text('Start')")
    wait_for_replies(page, 0, 4)
    replies = list(Reply.objects.filter(turn__conversation__user__username="rater").order_by("position"))
    cut = [r for r in replies if r.serving.get("cut")]
    assert cut, "the 32-token cap cuts the bundled model's replies: the test needs one to continue"
    assert page.locator("text=Continue this reply").count() == len(cut)
    check_layout(page, 4)

    # Continue one cut candidate: it streams on from where it stopped, in place, and Save waits for it.
    target = cut[0]
    card = page.locator(f"#candidate-{target.pk}")
    with page.expect_response(lambda r: r.url.endswith(f"/reply/{target.pk}/continue/")) as answer:
        card.locator("text=Continue this reply").click()
    assert answer.value.status == 200
    page.wait_for_function(f"document.querySelector('#reply-{target.pk}').dataset.status === 'done'")
    longer = Reply.objects.get(pk=target.pk)
    assert longer.content.startswith(target.content) and longer.token_count > target.token_count
    assert longer.serving["continued"] == 1

    # Saving with one reply unrated is refused with that reply named; nothing is stored.
    rating = page.locator("input[type=range][form=rate-form]")
    for i, value in enumerate((15, 85, 40)):
        rating.nth(i).fill(str(value))
    assert not page.locator("#rate-submit").is_disabled()
    page.click("#rate-submit")
    page.wait_for_selector("#rate-form .error")
    assert "Reply 4 is not rated yet" in page.inner_text("#rate-form .error")
    assert not Reply.objects.filter(turn__conversation__user__username="rater", score__isnull=False).exists()
    check_layout(page, 4)  # and the refused page keeps the three set, at phone width

    # At desktop size the cards sit side by side, each with its slider inside it.
    desk = browser.new_context(viewport={"width": 1366, "height": 768}, bypass_csp=True).new_page()
    desk.goto(base + "/login/")
    desk.fill("#id_username", "rater")
    desk.fill("#id_password", PASSWORD)
    desk.click("button[type=submit]")
    desk.wait_for_url(base + "/")
    desk.goto(base + f"/collect/{target.turn.conversation_id}/")
    check_layout(desk, 4)
    tops = desk.evaluate("[...document.querySelectorAll('.candidate.rating')].map(c => c.getBoundingClientRect().top)")
    assert tops[0] == tops[1], "the first two candidates should be side by side on a desktop"
    desk.context.close()

    set_every_slider(page.locator(".candidates"), 50, **{f"score-{r.pk}": s
                                                         for r, s in zip(replies, (15, 85, 40, 60))})
    page.click("#rate-submit")
    page.wait_for_selector("form.send textarea")
    stored = dict(Reply.objects.filter(pk__in=[r.pk for r in replies]).values_list("pk", "score"))
    assert [stored[r.pk] for r in replies] == [15, 85, 40, 60]
