"""Deleting an account removes the person's rows and their vectors from every saved version; the version
still loads and serves them as anyone unknown."""

import shutil

import pytest
import torch
from django.contrib.auth import get_user_model
from django.core.management import call_command

from trainer.core.artifacts import load_run, load_user_index
from trainer.models import TrainingRun
from users.models import Conversation, Profile, VectorFit

pytestmark = pytest.mark.django_db


def test_a_deleted_account_leaves_no_rows_and_no_vectors(owner, staff, settings, tmp_path, tiny_run_folder):
    settings.ARTIFACTS_DIR = tmp_path
    folder = tmp_path / "runs" / "1" / "model"
    shutil.copytree(tiny_run_folder, folder)  # the suite's shared version stays untouched
    run = TrainingRun.objects.create(name="v", created_by=staff, status=TrainingRun.Status.COMPLETED,
                                     artifacts="runs/1/model")
    Conversation.objects.create(user=owner)
    fitted = tmp_path / "vectors" / "fit.safetensors"
    fitted.parent.mkdir(parents=True)
    fitted.write_bytes(b"vectors")
    VectorFit.objects.create(user=owner, run=run, pairs_total=1, status="done", path="vectors/fit.safetensors")
    before = load_run(folder)
    own, generic = before.soft_prompt("web-alice"), before.soft_prompt(None)
    others = {u: before.soft_prompt(u) for u in ("web-sim-a", "web-sim-b")}
    assert not torch.equal(own, generic)

    call_command("delete_account", "web-alice", yes=True)

    assert not get_user_model().objects.filter(username="alice").exists()
    assert not Profile.objects.filter(user_id=owner.pk).exists() and not Conversation.objects.exists()
    assert not fitted.exists()
    after = load_run(folder)  # the version still loads
    assert "web-alice" not in load_user_index(folder)
    assert len(after.user_index) == len(before.user_index)  # every other row where it was
    row = torch.tensor([before.user_index.row("web-alice")])
    assert torch.equal(after.model.user_model(row)[0], generic)  # their row now holds the generic vectors
    assert torch.equal(after.soft_prompt("web-alice"), generic)
    for user, vectors in others.items():
        assert torch.equal(after.soft_prompt(user), vectors)
