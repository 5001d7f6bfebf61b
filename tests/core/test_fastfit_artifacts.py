import contextlib
import dataclasses

import pytest
import torch
from torch.testing import assert_close

from tests.core.conftest import fast_config, small_pairs
from trainer.core.artifacts import load_run, save_run
from trainer.core.config import FastFitConfig
from trainer.core.data import DataError
from trainer.core.evaluate import evaluate
from trainer.core.fastfit import fast_fit
from trainer.core.generation import generate_text
from trainer.core.loop import train


@pytest.fixture(scope="module")
def trained(tiny_model_path):
    return train(fast_config(epochs=2.0), str(tiny_model_path), small_pairs(), log=lambda *_: None)


def test_fast_fit_adds_a_user_without_touching_anyone_else(trained):
    core = trained.model
    before = {n: p.detach().clone() for n, p in core.named_parameters()}
    old_rows = core.user_model(torch.arange(core.user_model.n_users + 1)).detach()
    newcomer = [dataclasses.replace(p, user_id="newbie") for p in small_pairs()[4:8]]  # user2's preferences
    report = fast_fit(core, trained.tokenizer, trained.user_index, trained.config, "newbie", newcomer)
    assert report.row == core.user_model.n_users == 4 and trained.user_index.row("newbie") == 4
    assert report.losses[-1] < report.losses[0]
    for n, p in core.lm.named_parameters():
        assert torch.equal(p, before[f"lm.{n}"]), n  # LoRA and base frozen
    assert_close(core.user_model(torch.arange(4)).detach(), old_rows, rtol=0, atol=0)
    assert not torch.equal(core.user_model(torch.tensor([4]))[0], old_rows[0])  # moved away from generic


def test_the_jacobian_rows_are_each_replys_own_gradient(trained):
    from trainer.core.fastfit import _Problem
    from trainer.core.policy import encode_pairs
    from trainer.core.reference import ReferenceCache

    core, config = trained.model, trained.config
    encoded = encode_pairs(trained.tokenizer, small_pairs()[:3], None, config)
    refs = ReferenceCache()
    refs.fill(core, encoded, device="cpu")
    problem = _Problem(core, core.sequences(encoded, with_slots=True), refs.get(encoded, "cpu"), config,
                       contextlib.nullcontext)
    param = (core.user_model.new_user_parameter().detach() + 0.01 * torch.randn(config.n_user_tokens, 64))
    logps, J = problem.jacobian(param)
    assert J.shape == (6, param.numel())
    for s in (0, 4):  # a chosen and a rejected reply, each differentiated on its own
        p = param.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(problem.logps(p)[s], p)
        assert_close(J[s], grad.flatten(), rtol=1e-4, atol=1e-5)
    assert_close(logps, problem.logps(param).detach(), rtol=1e-5, atol=1e-5)


def test_the_adam_fast_fit_lowers_the_loss_too(trained):
    newcomer = [dataclasses.replace(p, user_id="adam-newbie") for p in small_pairs()[4:8]]
    report = fast_fit(trained.model, trained.tokenizer, trained.user_index, trained.config, "adam-newbie", newcomer,
                      fit=FastFitConfig(method="adam", steps=8, lr=5e-2))
    assert len(report.losses) == 9 and report.losses[-1] < report.losses[0]


def test_a_refit_can_start_from_the_persons_trained_vectors(trained):
    core, index = trained.model, trained.user_index
    pairs = [dataclasses.replace(p, user_id="again") for p in small_pairs()[:4]]
    unmoved = FastFitConfig(method="adam", steps=0)  # no step: the new row is exactly where it started
    fresh = fast_fit(core, trained.tokenizer, index, trained.config, "again", pairs, fit=unmoved)
    user1 = index.row("user1")
    resumed = fast_fit(core, trained.tokenizer, index, trained.config, "again-from-user1",
                       [dataclasses.replace(p, user_id="again-from-user1") for p in pairs], fit=unmoved,
                       start_row=user1)
    vectors = core.user_model(torch.tensor([0, fresh.row, user1, resumed.row])).detach()
    assert_close(vectors[1], vectors[0], rtol=0, atol=0)  # from the generic user
    assert_close(vectors[3], vectors[2], rtol=0, atol=0)  # from user1's trained vectors
    assert not torch.equal(vectors[0], vectors[2])


def test_fast_fit_refuses_a_user_with_no_pairs(trained):
    with pytest.raises(DataError, match="'nobody' has no pairs"):
        fast_fit(trained.model, trained.tokenizer, trained.user_index, trained.config, "nobody", small_pairs())


def test_evaluation_scores_unseen_users_with_the_generic_vectors(trained):
    pairs = small_pairs()
    stranger = [dataclasses.replace(p, user_id="stranger") for p in pairs[:4]]
    result = evaluate(trained.model, trained.tokenizer, trained.user_index, trained.config, pairs[:8] + stranger)
    assert result.seen["n"] == 8 and result.unseen["n"] == 4
    rows = {r["user_id"]: r for r in result.per_user}
    assert rows["stranger"]["seen"] is False and rows["user1"]["seen"] is True
    generic = evaluate(trained.model, trained.tokenizer, None, trained.config, pairs[:4])  # nobody is known
    assert rows["stranger"]["margin"] == pytest.approx(generic.per_user[0]["margin"], abs=1e-5)
    assert {"eval/loss", "eval/rewards/accuracies", "eval/rewards/margins"} <= set(result.metrics)


def test_a_saved_run_loads_back_with_the_same_scores_and_generates(trained, tiny_model_path, tmp_path):
    out = save_run(tmp_path / "run", trained.model, trained.user_index, trained.config,
                   base_model=str(tiny_model_path), metrics={"history": trained.history})
    assert {"adapter", "user_model.safetensors", "users.json", "config.json", "metrics.json"} <= \
        {p.name for p in out.iterdir()}
    run = load_run(out)
    pairs = small_pairs()
    a = evaluate(trained.model, trained.tokenizer, trained.user_index, trained.config, pairs)
    b = evaluate(run.model, run.tokenizer, run.user_index, run.config, pairs)
    assert [r["margin"] for r in a.per_user] == pytest.approx([r["margin"] for r in b.per_user], abs=1e-5)
    assert run.config == trained.config and run.metrics["history"] == trained.history
    soft = run.soft_prompt("user1")
    assert soft.shape == (trained.config.n_user_tokens, 64)
    assert_close(run.soft_prompt("unknown"), run.soft_prompt(None))
    msgs = [{"role": "user", "content": "Tell me about owls."}]
    text = generate_text(run.model.lm, run.tokenizer, msgs, soft_prompt=soft, temperature=0, max_new_tokens=8)
    merged = load_run(out, merge=True)
    assert not hasattr(merged.model.lm, "disable_adapter")  # a plain transformers model for serving
    assert generate_text(merged.model.lm, merged.tokenizer, msgs, soft_prompt=soft, temperature=0,
                         max_new_tokens=8) == text
    save_run(out, trained.model, trained.user_index, trained.config, base_model=str(tiny_model_path))
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # replaced in place, no temp folders left
