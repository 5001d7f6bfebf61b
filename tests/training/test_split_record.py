"""A run keeps the split it trained with: people who withdraw or rate more afterwards move no conversation
from one part to another, and an evaluation after a withdrawal leaves the person out."""

import pytest

from tests.factories import rated_conversations
from trainer.models import TrainingRun
from trainer.worker.personalization import plan
from trainer.worker.training import gather_pairs, run_split
from users.accounts.onboarding import withdraw

pytestmark = pytest.mark.django_db

DATA = {"min_pairs": 1, "unseen_fraction": 0.2, "test_fraction": 0.34}
CHOSEN = {"seed": 0, "max_people": 40, "prompts_per_person": 3, "blind_per_person": 2}


def test_an_evaluation_after_a_withdrawal_judges_the_same_held_out_conversations_without_them(
        staff, people, settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path
    run = TrainingRun.objects.create(name="v", created_by=staff, status=TrainingRun.Status.COMPLETED,
                                     config={"seed": 5}, data_filter=DATA)
    trained = run_split(run, gather_pairs(DATA), record=True)  # what the worker does as it starts training
    before, _ = plan(run, CHOSEN)
    leaving = next(u for u in people if f"web-{u.username}" in trained.seen_users)
    withdraw(user=leaving)
    rated_conversations(people[0], n=3)  # and someone rated more since
    after, _ = plan(run, CHOSEN)
    assert f"web-{leaving.username}" in {p.person for p in before}
    assert f"web-{leaving.username}" not in {p.person for p in after}
    held_out = [(p.user_id, p.prompt) for p in trained.test_seen]
    kept = [(p.person, p.prompt) for p in before if (p.person, p.prompt) in held_out]
    assert [(p.person, p.prompt) for p in after if (p.person, p.prompt) in held_out] == [
        (person, prompt) for person, prompt in kept if person != f"web-{leaving.username}"]
    again = run_split(run, gather_pairs(DATA))
    assert again.train == [p for p in trained.train if p.user_id != f"web-{leaving.username}"]
    assert again.seen_users == trained.seen_users  # the version's user table does not change
