"""One name for one thing: the pages take the names of methods, versions, candidate replies and the compared
models from alignment_site.glossary, so the same concept reads the same on every page."""

import re

import pytest
from django.urls import reverse

from alignment_site import glossary
from trainer.models import TrainingRun

pytestmark = pytest.mark.django_db


def test_a_method_has_one_name_on_the_form_the_list_and_the_run_page(client, staff):
    config = {"loss": "dpo", "user_model": "individual", "n_user_tokens": 10}
    run = TrainingRun.objects.create(name="tea study", created_by=staff, config=config,
                                     status=TrainingRun.Status.COMPLETED)
    plain = TrainingRun.objects.create(name="tea baseline", created_by=staff, config={**config, "user_model": "none"})
    client.force_login(staff)
    form = client.get(reverse("run_new")).content.decode()
    assert re.search(r'<option value="p-dpo"[^>]*>P-DPO</option>', form)
    assert '<option value="dpo">DPO</option>' in form
    name = glossary.method_long(config)
    assert name == "P-DPO · individual user model, 10 vectors"
    listing = client.get(reverse("run_list")).content.decode()
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert name in listing and name in page and glossary.version(run) in page
    assert "DPO · no user model" in listing and "DPO · no user model" in client.get(
        reverse("run_detail", args=[plain.pk])).content.decode()
    for other in ("DPO, individual user model", "DPO · individual<", "(plain, no user model)", "T_u="):
        assert other not in listing + page


def test_form_labels_spell_lora_one_way_and_say_optional_once(client, staff, owner):
    client.force_login(staff)
    form = client.get(reverse("run_new")).content.decode()
    assert "LoRA alpha" in form and "LoRA dropout" in form and "Lora" not in form
    client.force_login(owner)
    survey = client.get(reverse("survey")).content.decode()
    assert "(optional)" in survey and "(optional) <span" not in survey and "(optional) (optional)" not in survey


def test_candidate_replies_are_numbered_the_same_in_every_turn(db, owner, monkeypatch):
    from tests.collection.conftest import survey_answers
    from users.collection import selectors
    from users.collection import services as collection
    from users.survey.services import survey_save

    monkeypatch.setattr(collection, "reply_enqueue", lambda *, reply_id: True)
    for name, prompt, t, p in __import__("importlib").import_module("users.migrations.0003_default_sources").DEFAULTS:
        from users.models import ReplySource

        ReplySource.objects.get_or_create(name=name, defaults={"system_prompt": prompt, "temperature": t, "top_p": p})
    survey_save(user=owner, **survey_answers())
    conversation = collection.prism_conversation_start(user=owner, kind="unguided", text="Hello")
    turn = conversation.turns.get(index=0)
    replies = list(turn.replies.order_by("position"))
    for reply in replies:
        collection.reply_complete(reply=reply, content="hi")
    collection.turn_rate(turn=turn, scores={r.pk: 10 + i for i, r in enumerate(replies)}, pick=None)
    later = collection.prism_turn_send(conversation=conversation, text="More")
    for reply in later.replies.all():
        collection.reply_complete(reply=reply, content="more")
    labels = [[label for _, label in view.candidates] for view in selectors.prism_turns(conversation)]
    assert labels == [["Reply 1", "Reply 2", "Reply 3", "Reply 4"], ["Reply 1", "Reply 2"]]


def test_the_compared_models_have_the_same_names_before_and_after_the_reveal(client, owner):
    from users.chat.selectors import COMPARE_LABELS

    client.force_login(owner)
    home = client.get(reverse("compare_home")).content.decode()
    assert set(COMPARE_LABELS.values()) == set(glossary.VECTORS.values())
    for kind in ("own", "generic", "base"):  # plain DPO only in the comparisons an evaluation leaves
        assert glossary.VECTORS[kind] in home
    assert "personalized model" not in home


def test_the_admin_says_replies(admin_client):
    assert "Replies" in admin_client.get("/admin/").content.decode()
    assert "Replys" not in admin_client.get("/admin/").content.decode()
