"""The raters page on ratings stored as the site stores them: careful simulated people among careless ones,
flagged and shown first with their reason; a run that asks leaves the flagged out, and its preview says how many;
a turn rated on this site records when."""

import datetime
import random
import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from bench.pairing import rated_turns
from tests.factories import person
from tests.training.test_run_services import FORM_DEFAULTS
from trainer import selectors
from trainer.worker.training import gather_pairs
from users.collection.services import turn_rate
from users.models import Conversation, Reply, Turn
from users.synthetic.personas import sample_population

pytestmark = pytest.mark.django_db
PROMPTS = ["How do I start running?", "Explain how vaccines work.", "What should I cook tonight?"]
CARELESS = {"careless-same": "one score", "careless-random": "no pattern", "careless-fast": "faster than reading"}


def store(user, candidates: list[tuple[str, int]], n: int, *, seconds: float) -> None:
    """One rated turn as the collection pages leave it: replies finished, ratings saved ``seconds`` later."""
    shown = timezone.now() - datetime.timedelta(hours=1)
    conversation = Conversation.objects.create(user=user, kind=Conversation.Kind.UNGUIDED, title=f"c{n}")
    turn = Turn.objects.create(conversation=conversation, index=0, user_message=PROMPTS[n % len(PROMPTS)],
                               rated_at=shown + datetime.timedelta(seconds=seconds))
    best = max(range(len(candidates)), key=lambda i: candidates[i][1])
    for position, (text, score) in enumerate(candidates):
        Reply.objects.create(turn=turn, position=position, content=text, status=Reply.Status.DONE, score=score,
                             chosen=position == best, finished_at=shown)


@pytest.fixture
def raters(db):
    careful = sample_population(6, dimension="length", majority_pole="detailed", majority_share=0.7, seed=0)
    turns = rated_turns(careful, PROMPTS, 12, seed=1)
    accounts = {p.user_id: person(p.user_id, group=p.group) for p in careful}
    for n, turn in enumerate(turns):
        candidates = [(text, s) for text, s, _ in turn["candidates"]]
        store(accounts[turn["persona"].user_id], candidates, n,
              seconds=sum(len(t.split()) for t, _ in candidates) / 4.0)  # reading at 4 words a second
    rng = random.Random(0)
    template = [[(text, s) for text, s, _ in t["candidates"]] for t in turns if t["persona"] == careful[0]]
    for name in CARELESS:
        user = person(name)
        for n, candidates in enumerate(template):
            if name == "careless-same":
                candidates = [(text, 50) for text, _ in candidates]
            elif name == "careless-random":
                candidates = [(text, rng.randint(1, 100)) for text, _ in candidates]
            store(user, candidates, n, seconds=1.0 if name == "careless-fast" else 60.0)
    return accounts


def test_staff_see_the_careless_raters_first_with_their_reasons(client, staff, raters):
    client.force_login(staff)
    page = client.get(reverse("raters")).content.decode()
    assert "<strong>3</strong> of 9 people flagged" in page
    rows = re.findall(r'<tr( class="flagged")?>\s*<td><a [^>]*>([^<]+)</a>', page)
    assert {name for _, name in rows[:3]} == {f"web-{n}" for n in CARELESS} and all(f for f, _ in rows[:3])
    assert not any(flagged for flagged, _ in rows[3:])
    for name, flag in CARELESS.items():
        row = page[page.index(f">web-{name}</a>"):]
        assert f'<span class="badge warn">{flag}</span>' in row[:row.index("</tr>")]


def test_a_run_that_asks_leaves_the_flagged_out_and_its_preview_says_so(client, staff, raters, monkeypatch):
    everyone = selectors.pair_counts({"min_pairs": 1})
    careful = selectors.pair_counts({"min_pairs": 1, "exclude_flagged": True})
    left_out = get_user_model().objects.filter(pk__in=set(everyone) - set(careful))
    assert {u.username for u in left_out} == {"careless-random", "careless-fast"}  # one score for all: no pairs
    pairs = gather_pairs({"min_pairs": 1, "exclude_flagged": True})
    assert pairs and not any(p.user_id.startswith("web-careless") for p in pairs)
    from trainer.commandline import pairs_from

    assert len(pairs_from({"exclude_flagged": True})) == len(pairs)  # the command line's --exclude-flagged
    import users.dataset.raters as raters_module

    worked_out = []
    flagged_people = raters_module.flagged_people
    monkeypatch.setattr(raters_module, "flagged_people", lambda *a: worked_out.append(1) or flagged_people(*a))
    client.force_login(staff)
    preview = client.get(reverse("run_preview"), {**FORM_DEFAULTS, "exclude_flagged": "on"}).content.decode()
    assert "Left out as the start form asks: 2 flagged raters" in preview
    assert len(worked_out) == 1  # every read of the preview (pairs, pairings, who is left out) shares one
    assert f"This run trains on <strong>{sum(careful.values())}</strong> pairs" in preview


def test_a_turn_rated_on_this_site_records_when(owner):
    conversation = Conversation.objects.create(user=owner, kind=Conversation.Kind.UNGUIDED, title="t")
    turn = Turn.objects.create(conversation=conversation, index=0, user_message="Which tea?")
    replies = [Reply.objects.create(turn=turn, position=i, content=f"r{i}", status=Reply.Status.DONE)
               for i in range(2)]
    before = timezone.now()
    turn_rate(turn=turn, scores={replies[0].pk: 70, replies[1].pk: 20})
    turn.refresh_from_db()
    assert before <= turn.rated_at <= timezone.now()
