"""How far a participant scrolls from reading a reply to rating it, at desktop and phone sizes.

The collection page of a real opening turn (four finished candidates whose texts the bundled model wrote) is
served by uvicorn on a throw-away SQLite database and opened in Debian's chromium. For each reply it measures,
in CSS pixels: how far its rating slider lies outside the reply's own card (the target is 0), and the scroll
from the end of the reply to its slider. The obvious alternative, every slider in one form after all the
replies (the earlier page), is measured on the same page as the distance from the end of each reply to the end
of the last card, which is where that form began: a lower bound of what it cost.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

from bench.figures import Figure

SIZES = {"desktop 1366x768": (1366, 768), "phone 390x844": (390, 844)}
PASSWORD = "bench-pass-phrase-1"

MEASURE = """() => {
  const cards = [...document.querySelectorAll('.candidate.rating')];
  const end = Math.max(...cards.map(c => c.getBoundingClientRect().bottom));
  return cards.map(card => {
    const reply = card.querySelector('.bubble').getBoundingClientRect();
    const slider = card.querySelector('input[type=range]').getBoundingClientRect();
    const box = card.getBoundingClientRect();
    return {beyond: Math.max(0, slider.bottom - box.bottom, box.top - slider.top),
            scroll: Math.max(0, slider.bottom - reply.bottom), before: Math.max(0, end - reply.bottom)};
  });
}"""


def conversation_with(texts: list[list[str]]) -> list[int]:
    """A participant with one opening turn per list of texts, every candidate finished; their ids."""
    from django.contrib.auth import get_user_model

    from users.accounts.onboarding import consent_give
    from users.collection import services as collection
    from users.survey.services import survey_save

    user = get_user_model().objects.create_user(username="bench-rater", password=PASSWORD)
    consent_give(user=user)
    survey_save(user=user, stated_prefs={d: 60 for d in ("values", "creativity", "fluency", "factuality", "diversity",
                                                          "safety", "personalisation", "helpfulness")},
                self_description="Bench.", lm_familiarity="Very familiar")
    ids = []
    for n, candidates in enumerate(texts):
        conversation = collection.prism_conversation_start(user=user, kind="unguided", text=f"Question {n + 1}",
                                                           enqueue=False)
        for reply, text in zip(conversation.turns.get().replies.order_by("position"), candidates):
            collection.reply_complete(reply=reply, content=text)
        ids.append(conversation.pk)
    return ids


def measure(texts: list[list[str]], shots: Path | None = None) -> list[Figure]:
    """The figures; with ``shots``, a full-page screenshot of the first turn at each size is saved there."""
    from bench.stack import setup_django, workdir
    from tests.services import free_port, http_ready, running

    folder = workdir("bench-layout-")
    setup_django(folder)
    conversations = conversation_with(texts)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "uvicorn", "alignment_site.asgi:application", "--port", str(port),
           "--log-level", "warning"]
    from playwright.sync_api import sync_playwright

    figures = []
    with running(cmd, dict(os.environ), Path(folder) / "web.log", http_ready(base + "/login/")), \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        print("\n| window | replies | slider outside its card, median (max) | scroll from a reply to its slider, "
              "median | to a form after all replies, median | ratio |")
        print("|---|---|---|---|---|---|")
        for size, (width, height) in SIZES.items():
            page = browser.new_context(viewport={"width": width, "height": height}).new_page()
            page.goto(base + "/login/")
            page.fill("#id_username", "bench-rater")
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/")
            rows = []
            for conversation in conversations:
                page.goto(f"{base}/collect/{conversation}/")
                rows += page.evaluate(MEASURE)
                if shots is not None and conversation == conversations[0]:
                    page.screenshot(path=str(shots / f"rating-{width}x{height}.png"), full_page=True)
            beyond = [r["beyond"] for r in rows]
            scroll = statistics.median(r["scroll"] for r in rows)
            before = statistics.median(r["before"] for r in rows)
            print(f"| {size} | {len(rows)} | {statistics.median(beyond):.0f} px ({max(beyond):.0f}) | {scroll:.0f} px "
                  f"| {before:.0f} px | {before / max(scroll, 1):.1f}x |")
            figures += [
                Figure("collection", f"rating slider outside its reply's card, median ({size})",
                       f"{statistics.median(beyond):.0f} px", "0 px", statistics.median(beyond) == 0 and max(beyond) == 0),
                Figure("collection", f"scroll from a reply to its slider, median ({size})", f"{scroll:.0f} px"),
                Figure("collection", f"the same to a form after all replies, median ({size})", f"{before:.0f} px"),
            ]
            page.context.close()
        browser.close()
    return figures
