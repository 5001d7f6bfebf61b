"""The generate worker's side, in-process: which version and vectors answer a
reply, refits and activations picked up without a restart, batching."""

import pytest
import torch

from trainer.models import Activation, TrainingRun
from trainer.worker import refit, serving
from users.models import Conversation, Reply, Turn, VectorFit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tiny_serving")]


def queued_reply(user, source="personal", text="Tell me about tea."):
    conversation = Conversation.objects.create(user=user)
    turn = Turn.objects.create(conversation=conversation, index=0, user_message=text)
    return Reply.objects.create(turn=turn, source=source, chosen=True)


def answer(reply) -> Reply:
    assert serving.generate_reply(reply.pk) == Reply.Status.DONE
    reply.refresh_from_db()
    return reply


def test_a_trained_user_is_answered_by_the_active_version_with_their_own_vectors(owner, active_run):
    reply = answer(queued_reply(owner))
    assert reply.serving["version"] == active_run.pk
    assert reply.serving["vectors"] == "personal"
    assert reply.serving["batch"] == 1
    assert reply.model_name.startswith(f"run {active_run.pk}")


def test_a_user_not_in_training_gets_the_generic_vectors(outsider, active_run):
    assert answer(queued_reply(outsider)).serving["vectors"] == "generic"


def test_without_an_active_version_the_base_model_answers(owner):
    reply = answer(queued_reply(owner))
    assert {k: v for k, v in reply.serving.items() if k != "cut"} == {"version": None, "vectors": "none", "batch": 1,
                                                                      "backend": "hf"}


def test_a_reply_cut_by_the_token_limit_says_so_and_offers_to_continue(owner, client):
    from django.urls import reverse

    reply = answer(queued_reply(owner, source="base"))  # 4 tokens at most: the tiny model's text runs on
    assert reply.token_count == 4 and reply.serving["cut"] is True
    client.force_login(owner)
    page = client.get(reverse("chat_detail", args=[reply.turn.conversation_id])).content.decode()
    assert "This reply was cut at the length limit (4 tokens)." in page and 'class="continue-form"' in page
    Reply.objects.filter(pk=reply.pk).update(serving={**reply.serving, "cut": False})  # ended by itself
    page = client.get(reverse("chat_detail", args=[reply.turn.conversation_id])).content.decode()
    assert "cut at the length limit" not in page and "continue-form" not in page


def test_comparison_columns_use_personal_generic_and_no_vectors(owner, active_run):
    kinds = [answer(queued_reply(owner, source=s)).serving["vectors"]
             for s in ("compare-personal", "compare-generic", "compare-base")]
    assert kinds == ["personal", "generic", "none"]


def test_each_user_is_served_their_own_vectors_and_never_anothers(owner, outsider, active_run):
    from tests.factories import person

    sim = person("sim-a")
    served = serving.served_run(active_run.pk, active_run.artifacts)
    plans = {u.username: serving.reply_plan(Reply.objects.select_related("turn__conversation__user").get(
        pk=queued_reply(u).pk)) for u in (owner, sim, outsider)}
    torch.testing.assert_close(plans["alice"].soft_prompt, served.soft_prompt("web-alice"))
    torch.testing.assert_close(plans["sim-a"].soft_prompt, served.soft_prompt("web-sim-a"))
    torch.testing.assert_close(plans["mallory"].soft_prompt, served.soft_prompt(None))
    assert not torch.equal(plans["alice"].soft_prompt, plans["sim-a"].soft_prompt)


def test_switching_the_active_version_takes_effect_on_the_next_reply(owner, staff, active_run):
    assert answer(queued_reply(owner)).serving["version"] == active_run.pk
    second = TrainingRun.objects.create(name="second", status=TrainingRun.Status.COMPLETED, config=active_run.config,
                                        artifacts=active_run.artifacts)
    Activation.objects.create(run=second, activated_by=staff)
    assert answer(queued_reply(owner)).serving["version"] == second.pk


def test_a_refit_saves_the_users_vectors_and_the_next_reply_uses_them(owner, active_run, settings):
    from tests.factories import rated_conversations

    settings.FASTFIT_ROUNDS = 1
    rated_conversations(owner, n=4)
    fit = VectorFit.objects.create(user=owner, run=active_run, pairs_total=4)
    assert refit.vectors_refit(fit.pk) == VectorFit.Status.DONE
    fit.refresh_from_db()
    assert fit.pairs_used == 4 and fit.path.endswith(".safetensors")
    assert refit.vectors_refit(fit.pk) == "skipped"  # a redelivered task does nothing
    reply = answer(queued_reply(owner))
    assert reply.serving["vectors"] == "fitted" and reply.serving["fit"] == fit.pk
    served = serving.served_run(active_run.pk, active_run.artifacts)
    assert not torch.equal(served.fitted.get(fit.pk, pytest.fail), served.soft_prompt("web-alice"))


def test_a_refit_without_pairs_fails_with_a_reason(owner, active_run):
    fit = VectorFit.objects.create(user=owner, run=active_run, pairs_total=0)
    assert refit.vectors_refit(fit.pk) == VectorFit.Status.FAILED
    fit.refresh_from_db()
    assert "no pairs" in fit.error


def test_a_stop_request_ends_the_reply_as_stopped(owner, active_run, settings, test_redis):
    from users.conversations import streams

    settings.CHAT_MAX_NEW_TOKENS = 200
    reply = queued_reply(owner)
    streams.request_stop(reply)
    assert serving.generate_reply(reply.pk) == Reply.Status.STOPPED
