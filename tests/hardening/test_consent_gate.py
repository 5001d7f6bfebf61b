"""Chat, compare and collection are for people who agreed to take part; runs, previews and exports of
training data leave out everyone else, and the start form says how many and why."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.factories import population, rated_conversations
from trainer import services
from trainer.forms import RunForm
from users.models import Conversation, Profile

pytestmark = pytest.mark.django_db


@pytest.fixture
def stranger(db):
    """Signed up, never agreed (a scripted account)."""
    return get_user_model().objects.create_user("scripted", password="pw-scripted-123")


@pytest.mark.parametrize("url", ["chat_list", "compare_home", "collect_home"])
def test_a_person_who_never_agreed_is_sent_to_the_consent_page(client, stranger, url):
    client.force_login(stranger)
    response = client.get(reverse(url))
    assert response.status_code == 302 and response["Location"] == reverse("study_intro")


@pytest.mark.parametrize("url", ["chat_new", "compare_start", "collect_start"])
def test_what_they_post_is_refused_and_nothing_is_stored(client, stranger, url):
    client.force_login(stranger)
    response = client.post(reverse(url), {"message": "score-100 rewrite", "kind": "unguided"})
    assert response.status_code == 403 and "agree" in response.content.decode()
    assert not Conversation.objects.filter(user=stranger).exists()


def test_staff_and_people_who_agreed_go_in(client, owner, staff):
    for person in (owner, staff):
        client.force_login(person)
        assert client.get(reverse("chat_list")).status_code == 200


def test_runs_leave_out_people_without_consent_or_who_withdrew_and_the_preview_says_so(client, staff):
    people = population(people=6, conversations=2)  # consented: 6 people, 2 pairs each
    stranger = get_user_model().objects.create_user("scripted", password="pw-scripted-123")
    rated_conversations(stranger, n=5)
    Profile.objects.filter(user=people[0]).update(withdrawn_at="2026-12-01T00:00:00Z")
    data = {"min_pairs": 1, "unseen_fraction": 0.0, "test_fraction": 0.0}
    preview = services.run_preview(data_filter=data, config={"batch_size": 4, "micro_batch_size": 4})
    assert (preview["users"], preview["pairs"]) == (5, 10)
    assert preview["left_out"] == {"withdrawn": 1, "no_consent": 1, "flagged": 0}  # flagged: only when asked
    client.force_login(staff)
    form = {name: field.initial for name, field in RunForm.base_fields.items() if field.initial is not None}
    page = client.get(reverse("run_preview"), {**form, **data, "batch_size": 4, "micro_batch_size": 4}).content.decode()
    assert "1 person without consent to take part (kept, never trained on)" in page
    assert "1 person who withdrew from the study" in page
    exported = b"".join(client.get(reverse("data_export", args=["pairs"])).streaming_content).decode()
    assert exported.count("\n") == 10 and "web-scripted" not in exported


def test_a_participants_chats_download_holds_their_chats_and_comparisons_only(client, owner, outsider):
    from users.models import Reply, Turn

    for person, text in ((owner, "Tea or coffee?"), (outsider, "Mallory's secret question")):
        turn = Turn.objects.create(conversation=Conversation.objects.create(user=person), index=0,
                                   user_message=text)
        Reply.objects.create(turn=turn, status=Reply.Status.DONE, content="An answer.", chosen=True, score=70)
    client.force_login(owner)
    lines = b"".join(client.get(reverse("data_export", args=["chats"])).streaming_content).decode().splitlines()
    assert len(lines) == 1 and "Tea or coffee?" in lines[0] and "Mallory" not in lines[0]
    assert '"score": 70' in lines[0]


def test_agreeing_again_after_withdrawing_takes_part_from_then_on(client, owner):
    from users.accounts import onboarding

    onboarding.withdraw(user=owner)
    assert not onboarding.consent_given(owner)
    client.force_login(owner)
    assert client.get(reverse("chat_list")).status_code == 302
    onboarding.consent_give(user=owner)
    assert onboarding.consent_given(owner) and Profile.objects.get(user=owner).withdrawn_at is None
    assert client.get(reverse("chat_list")).status_code == 200


def test_an_imported_prism_person_without_consent_is_kept_and_never_trained_on(tmp_path):
    import io
    import json

    from trainer.worker.training import gather_pairs
    from users.prism.importer import prism_import
    from users.synthetic.prism_files import prism_files_make

    paths = prism_files_make(folder=tmp_path, people=6, conversations=12, replies=60, seed=4)
    survey = [json.loads(line) for line in paths["survey"].read_text().splitlines()]
    survey[0]["consent"] = "No, I do not consent"
    files = {name: open(path, "rb") for name, path in paths.items()}
    files["survey"] = io.BytesIO("".join(json.dumps(row) + "\n" for row in survey).encode())
    prism_import(files=files)
    refused = Profile.objects.get(prism_user_id=survey[0]["user_id"])
    assert refused.consent.startswith("No") and Conversation.objects.filter(user=refused.user).exists()  # kept
    data = {"min_pairs": 1, "unseen_fraction": 0.0, "test_fraction": 0.0}
    pairs = gather_pairs(data)
    trained = {p.user_id for p in pairs}
    assert survey[1]["user_id"] in trained and refused.prism_user_id not in trained
    preview = services.run_preview(data_filter=data, config={"batch_size": 4, "micro_batch_size": 4})
    assert preview["left_out"]["no_consent"] == 1
