"""In Chromium: a participant downloads what the study stores about them and withdraws; the next run leaves
them out, the version trained on them before says so, and staff see the withdrawal on the dataset page."""

import json

import pytest

from tests.factories import population, rated_conversations
from tests.personas import login
from trainer import selectors, services
from trainer.models import TrainingRun
from users.models import Profile

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]
DATA = {"min_pairs": 1, "unseen_fraction": 0.0, "test_fraction": 0.0}


def test_a_participant_downloads_their_data_withdraws_and_the_next_run_leaves_them_out(
        page, live_server, test_redis, owner, staff, client, tmp_path):
    population(people=3, conversations=2)
    rated_conversations(owner, n=3)
    before = services.run_preview(data_filter=DATA, config={"batch_size": 4, "micro_batch_size": 4})
    trained = TrainingRun.objects.create(name="before", created_by=staff, status=TrainingRun.Status.COMPLETED,
                                         user_map=[{"user_id": "web-alice", "x": 0, "y": 0, "generic": False}])

    login(page, live_server.url, owner.username)
    page.goto(live_server.url + "/study/")
    page.click("#my-data-link")
    with page.expect_download() as download:
        page.click("#my-downloads >> text=pairs.jsonl")
    path = tmp_path / "pairs.jsonl"
    download.value.save_as(path)
    pairs = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(pairs) == 3 and {p["user_id"] for p in pairs} == {"web-alice"}

    page.check("input[name=withdraw]")
    page.click("#withdrawal button[type=submit]")
    page.wait_for_selector("text=You have withdrawn from the study")
    assert "You withdrew on" in page.locator("#withdrawal").inner_text()
    page.goto(live_server.url + "/chat/")  # their pages close
    page.wait_for_url(live_server.url + "/study/")
    page.goto(live_server.url + "/me/data/")  # their data stays theirs
    with page.expect_download() as download:
        page.click("#my-downloads >> text=survey.jsonl")

    assert Profile.objects.get(user=owner).withdrawn_at is not None
    after = services.run_preview(data_filter=DATA, config={"batch_size": 4, "micro_batch_size": 4})
    assert (before["users"], after["users"]) == (4, 3) and before["pairs"] - after["pairs"] == 3
    assert after["left_out"]["withdrawn"] == 1
    assert selectors.withdrawn_since_training(trained) == ["web-alice"]
    client.force_login(staff)
    assert "who has withdrawn from the study since: web-alice" in client.get(
        f"/staff/runs/{trained.pk}/").content.decode()
    dataset = client.get("/staff/dataset/").content.decode()
    assert 'id="count-withdrawn">1<' in dataset and "withdrew" in dataset
