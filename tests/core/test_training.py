import math

import pytest
import torch
from torch.testing import assert_close

from tests.core.conftest import fast_config, small_pairs
from trainer.core.checkpoint import latest_checkpoint, load_checkpoint
from trainer.core.data import DataError
from trainer.core.loop import TrainingError, load_base, train
from trainer.core.lora import LoraTargetError, add_lora


def _quiet(*_):
    pass


@pytest.mark.parametrize("user_model", ["individual", "cluster", "none"])
def test_training_moves_lora_and_user_vectors_but_never_base_weights(tiny_model_path, user_model):
    base, _ = load_base(str(tiny_model_path))
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    config = fast_config(user_model=user_model, epochs=2.0)
    result = train(config, str(tiny_model_path), small_pairs(), log=_quiet)
    core = result.model
    for name, p in core.lm.named_parameters():
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        if "lora_" in name:
            if "lora_B" in name:  # B starts at zero, so any update shows
                assert p.abs().sum() > 0, name
        else:
            assert_close(p, base_state[key], rtol=0, atol=0, msg=name)
    if user_model == "none":
        assert core.user_model is None
    else:
        fresh = train(fast_config(user_model=user_model, epochs=0.01), str(tiny_model_path), small_pairs()[:1],
                      log=_quiet)  # same seed: the user model as initialised (1 pair, 1 step on another user)
        moved = [n for n, p in core.user_model.named_parameters()
                 if not torch.equal(p, dict(fresh.model.user_model.named_parameters())[n])]
        assert moved, "user model did not change"
    assert result.status == "completed" and result.step == result.total_steps == 6
    assert {"loss", "rewards/margins", "rewards/accuracies", "logps/chosen", "grad_norm", "learning_rate/lora",
            "examples_per_second", "tokens_per_second"} <= set(result.history[-1])


def test_the_cluster_models_mixture_logits_can_have_their_own_learning_rate(tiny_model_path):
    config = fast_config(user_model="cluster", lr_user=1e-2, lr_mixture=0.5)
    result = train(config, str(tiny_model_path), small_pairs(), log=_quiet)
    last = result.history[0]  # the schedule scales every group by the same factor
    assert last["learning_rate/mixture"] == pytest.approx(50 * last["learning_rate/user"])
    plain = train(fast_config(user_model="cluster", epochs=0.34), str(tiny_model_path), small_pairs(), log=_quiet)
    assert "learning_rate/mixture" not in plain.history[0]  # 0 = the mixture shares lr_user


def test_resume_after_a_crash_gives_the_same_loss_curve(tiny_model_path, tmp_path):
    config = fast_config(epochs=2.0, checkpoint_every=2)  # 6 steps, LoRA dropout on: RNG state must resume too
    pairs = small_pairs()
    straight = train(config, str(tiny_model_path), pairs, log=_quiet)

    def crash(step, total, metrics):
        if step == 3:
            raise KeyboardInterrupt("simulated crash after step 3")

    with pytest.raises(KeyboardInterrupt):
        train(config, str(tiny_model_path), pairs, checkpoint_dir=tmp_path, progress=crash, log=_quiet)
    assert latest_checkpoint(tmp_path).name == "step-0000002"
    resumed = train(config, str(tiny_model_path), pairs, checkpoint_dir=tmp_path, log=_quiet)
    curve = lambda r: torch.tensor([[h["loss"], h["grad_norm"], h["rewards/margins"]] for h in r.history])  # noqa
    assert len(resumed.history) == 6
    assert_close(curve(resumed), curve(straight), rtol=1e-6, atol=1e-7)
    assert not torch.equal(curve(straight)[0], curve(straight)[-1])  # the curve is not flat


def test_checkpoints_carry_the_config(tiny_model_path, tmp_path):
    config = fast_config(checkpoint_every=1)
    train(config, str(tiny_model_path), small_pairs(), checkpoint_dir=tmp_path, log=_quiet)
    state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["config"] == config.to_dict() and state["step"] == 2
    with pytest.raises(TrainingError, match="different config"):
        train(fast_config(checkpoint_every=1, lr_lora=1.0), str(tiny_model_path), small_pairs(),
              checkpoint_dir=tmp_path, log=_quiet)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tiny_model_path, tmp_path):
    holder = {}

    def poison(step, total, metrics):
        if step == 2:  # the weights diverge after the step-2 checkpoint was written
            lora = next(p for n, p in holder["model"].named_parameters() if "lora_A" in n)
            with torch.no_grad():
                lora.fill_(float("nan"))

    import trainer.core.loop as loop

    real_build = loop.build_model

    def build(*args, **kwargs):
        holder["model"] = real_build(*args, **kwargs)
        return holder["model"]

    loop.build_model = build
    try:
        # NaN from step 3 on; host syncs happen only on log/checkpoint steps, so step 4 (a checkpoint step)
        # notices it and refuses to save.
        with pytest.raises(TrainingError, match=r"NaN or infinite at or before step 4.*step-0000002"):
            train(fast_config(epochs=2.0, checkpoint_every=2, log_every=5), str(tiny_model_path), small_pairs(),
                  checkpoint_dir=tmp_path, progress=poison, log=_quiet)
    finally:
        loop.build_model = real_build
    good = load_checkpoint(latest_checkpoint(tmp_path))
    assert good["step"] == 2 and not (tmp_path / "step-0000004").exists()
    assert all(torch.isfinite(v).all() for v in good["trainable"].values())


def test_cancel_stops_within_the_step_and_saves_the_last_whole_one(tiny_model_path, tmp_path):
    seen = []
    result = train(fast_config(epochs=3.0), str(tiny_model_path), small_pairs(), checkpoint_dir=tmp_path,
                   progress=lambda s, t, m: seen.append((s, t, m is not None)), should_cancel=lambda: len(seen) >= 2,
                   log=_quiet)
    # Asked after step 2 was reported: step 3's second micro-batch is never computed, step 3 is dropped.
    assert result.status == "cancelled" and result.step == 2 and result.total_steps == 9
    assert seen == [(1, 9, True), (2, 9, True)]
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 2


def test_a_cancel_between_micro_batches_resumes_to_the_same_curve(tiny_model_path, tmp_path):
    config = fast_config(epochs=2.0, batch_size=4, micro_batch_size=1)  # 4 micro-batches a step; dropout on
    pairs = small_pairs()
    straight = train(config, str(tiny_model_path), pairs, log=_quiet)
    asked = []

    def cancel() -> bool:  # checked before training, between micro-batches and at step ends
        asked.append(1)
        return len(asked) == 8  # inside step 2 (1 before, 3 + 1 in step 1, then the 3rd micro-batch of step 2)

    stopped = train(config, str(tiny_model_path), pairs, checkpoint_dir=tmp_path, should_cancel=cancel, log=_quiet)
    assert stopped.status == "cancelled" and stopped.step == 1
    resumed = train(config, str(tiny_model_path), pairs, checkpoint_dir=tmp_path, log=_quiet)
    curve = lambda r: torch.tensor([[h["loss"], h["grad_norm"], h["rewards/margins"]] for h in r.history])  # noqa
    assert len(resumed.history) == len(straight.history) == 6
    assert_close(curve(resumed), curve(straight), rtol=1e-6, atol=1e-7)


def test_a_cancel_during_model_load_stops_before_the_first_step(tiny_model_path, tmp_path):
    result = train(fast_config(), str(tiny_model_path), small_pairs(), checkpoint_dir=tmp_path,
                   should_cancel=lambda: True, log=_quiet)
    assert result.status == "cancelled" and result.step == 0 and result.history == []


def test_gradient_checkpointing_gives_the_same_loss_curve(tiny_model_path):
    pairs = small_pairs()
    plain = train(fast_config(epochs=2.0, lora_dropout=0.0), str(tiny_model_path), pairs, log=_quiet)
    saved = train(fast_config(epochs=2.0, lora_dropout=0.0, gradient_checkpointing=True), str(tiny_model_path),
                  pairs, log=_quiet)
    curve = lambda r: torch.tensor([[h["loss"], h["grad_norm"], h["rewards/margins"]] for h in r.history])  # noqa
    assert_close(curve(saved), curve(plain), rtol=1e-5, atol=1e-6)
    layers = lambda r: r.model.lm.get_base_model().model  # noqa: E731 (the decoder stack under the LoRA)
    assert layers(saved).gradient_checkpointing and not layers(plain).gradient_checkpointing


def test_an_empty_dataset_is_refused_before_loading_anything(tiny_model_path):
    with pytest.raises(DataError, match="empty"):
        train(fast_config(), str(tiny_model_path), [], log=_quiet)


def test_a_lora_target_that_matches_nothing_names_the_modules_that_exist(tiny_model_path):
    base, _ = load_base(str(tiny_model_path))
    with pytest.raises(LoraTargetError, match=r"\['query', 'value'\] match nothing.*k_proj.*q_proj.*v_proj"):
        add_lora(base, r=4, alpha=8, dropout=0.0, targets=["query", "value"])


def test_listed_users_without_pairs_are_reported(tiny_model_path):
    result = train(fast_config(), str(tiny_model_path), small_pairs(), users=["user1", "ghost"], log=_quiet)
    assert result.data["users_without_pairs"] == ["ghost"]
    assert "ghost" in result.user_index and result.model.user_model.n_users == 4


def test_diagnostics_are_recorded_every_n_steps(tiny_model_path):
    result = train(fast_config(epochs=2.0, diagnostics_every=3, diagnostics_pairs=2), str(tiny_model_path),
                   small_pairs(), log=_quiet)
    assert [d["step"] for d in result.diagnostics] == [3, 6]
    d = result.diagnostics[0]
    assert -1.0 <= d["entanglement/cosine"] <= 1.0 and d["entanglement/grad_norm_chosen"] > 0
    assert 0.0 <= d["entanglement/share_chosen_down"] <= 1.0
    assert math.isfinite(d["entanglement/inner"])
