"""The pairing strategies on rated conversations in the database: the pairs streamed and the pairs counted in SQL
agree for each, margin weights average 1, and the start form, its preview, a run, the command line and the
export all carry the choice."""

import json
from statistics import fmean

import pytest
from django.core.management import call_command
from django.urls import reverse

from tests.factories import person
from tests.training.test_run_services import FORM_DEFAULTS
from trainer import selectors, services
from trainer.core.pairing import STRATEGIES
from trainer.models import TrainingRun
from trainer.worker.training import gather_pairs
from users.collection.pairs import pair_rejected_replies, preference_pairs
from users.models import Conversation, Reply, Turn

pytestmark = pytest.mark.django_db
SCORES = (30, 90, 60, 30)  # the second is chosen; a tie at the bottom: best 3 pairs, all ordered 5 per turn


@pytest.fixture
def rater(db):
    user = person("rater")
    for i in range(2):
        conversation = Conversation.objects.create(user=user, kind=Conversation.Kind.UNGUIDED, title=f"q{i}")
        turn = Turn.objects.create(conversation=conversation, index=0, user_message=f"Question {i}?")
        for position, score in enumerate(SCORES):
            Reply.objects.create(turn=turn, position=position, content=f"reply {i}.{position}",
                                 status=Reply.Status.DONE, score=score, chosen=score == max(SCORES))
    return user


@pytest.mark.parametrize("pairing,per_turn", [("best", 3), ("all", 5), ("weighted", 3)])
def test_the_pairs_streamed_are_the_pairs_counted(rater, pairing, per_turn):
    pairs = list(preference_pairs(users=[rater], pairing=pairing))
    assert len(pairs) == pair_rejected_replies(users=[rater], pairing=pairing).count() == 2 * per_turn
    assert all(p["score_chosen"] > p["score_rejected"] for p in pairs)
    assert selectors.pair_counts({"pairing": pairing}) == {rater.pk: 2 * per_turn}


def test_weighted_pairs_carry_their_margin_over_the_mean_margin(rater):
    pairs = list(preference_pairs(users=[rater], pairing="weighted"))
    margins = [p["score_chosen"] - p["score_rejected"] for p in pairs]  # 60, 30, 60 per turn
    assert [p["weight"] for p in pairs] == pytest.approx([m / fmean(margins) for m in margins])
    assert fmean(p["weight"] for p in pairs) == pytest.approx(1.0)
    assert "weight" not in next(preference_pairs(users=[rater], pairing="best"))
    trained = gather_pairs({"pairing": "weighted", "min_pairs": 1})
    assert [p.weight for p in trained] == pytest.approx([p["weight"] for p in pairs])


def test_the_start_form_previews_each_strategys_count_and_the_run_keeps_the_choice(client, staff, rater):
    client.force_login(staff)
    form = {**FORM_DEFAULTS, "pairing": "all", "name": "every pair", "with_baseline": ""}
    preview = client.get(reverse("run_preview"), form).content.decode()
    assert "This run trains on <strong>10</strong> pairs" in preview
    assert ("best versus rest <strong>6</strong> · all ordered pairs <strong>10</strong>" in preview), preview
    assert client.post(reverse("run_new"), form).status_code == 302
    run = TrainingRun.objects.get(name="every pair")
    assert run.data_filter["pairing"] == "all"
    assert services.run_preview(data_filter=run.data_filter, config=run.config)["pairs"] == 10


def test_the_export_and_the_command_line_take_the_strategy(client, staff, rater, tmp_path):
    from trainer.commandline import pairs_from

    assert len(pairs_from({"pairing": "all", "min_pairs": 1})) == 10  # train, evaluate and fit_user's --pairing
    out = tmp_path / "all.jsonl"
    call_command("export_pairs", str(out), "--pairing", "all")
    assert len(out.read_text().splitlines()) == 10
    call_command("export_pairs", "--dataset", str(tmp_path / "weighted"), "--pairing", "weighted")
    card = (tmp_path / "weighted" / "README.md").read_text()
    assert STRATEGIES["weighted"] in card and "`weight`" in card
    client.force_login(staff)
    body = b"".join(client.get(reverse("data_export", args=["pairs"]), {"pairing": "weighted"}).streaming_content)
    assert fmean(json.loads(line)["weight"] for line in body.splitlines()) == pytest.approx(1.0)
    refused = client.get(reverse("data_export", args=["pairs"]), {"pairing": "pairwise"})
    assert refused.status_code == 400 and "best, all, weighted" in refused.content.decode()
