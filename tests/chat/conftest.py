"""A trained tiny version, active, for the personalized-chat tests.

The model is trained once per session in-process (seconds) on pairs of
"alice" (the owner persona) and two simulated people (by their exported ids, web-<username>), and saved under a
session ARTIFACTS_DIR; each test gets a COMPLETED TrainingRun row pointing at
it and an Activation. Workers started by these tests get the same
ARTIFACTS_DIR and BASE_MODEL (the tiny model), so the served version matches.
"""

from pathlib import Path

import pytest

TRAINED_USERS = ("web-alice", "web-sim-a", "web-sim-b")


def tiny_pairs():
    from trainer.core.data import Pair

    topics = ["rivers", "bread", "chess", "rain", "jazz", "tea"]
    pairs = []
    for u, user in enumerate(TRAINED_USERS):
        for c, t in enumerate(topics):
            good, bad = f"Short: {t}.", f"A long answer about {t}, with details."
            if u % 2:
                good, bad = bad, good
            pairs.append(Pair(user, [{"role": "user", "content": f"Tell me about {t}."}],
                              [{"role": "assistant", "content": good}], [{"role": "assistant", "content": bad}],
                              conversation_id=f"{user}-c{c}"))
    return pairs


@pytest.fixture
def tiny_serving(settings, tiny_model_path, test_redis):
    """Replies written in-process by the tiny model: short and greedy."""
    settings.BASE_MODEL = str(tiny_model_path)
    settings.CHAT_MAX_NEW_TOKENS = 4
    settings.CHAT_TEMPERATURE = 0.0


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def tiny_run_folder(artifacts_dir, tiny_model_path) -> Path:
    from trainer.core.artifacts import save_run
    from trainer.core.config import TrainConfig
    from trainer.core.loop import train

    config = TrainConfig(batch_size=6, micro_batch_size=6, epochs=1.0, lr_lora=1e-3, lr_user=1e-2, warmup_steps=0,
                         log_every=100, n_user_tokens=4, seed=0, max_prompt_length=64, max_length=128,
                         device="cpu")
    result = train(config, str(tiny_model_path), tiny_pairs(), log=lambda *_: None)
    return save_run(artifacts_dir / "runs" / "tiny" / "model", result.model, result.user_index, result.config,
                    base_model=str(tiny_model_path))


@pytest.fixture
def active_run(db, settings, artifacts_dir, tiny_run_folder, staff):
    """A completed, activated run serving the tiny model, with an evaluation and a user map."""
    import json

    from trainer.models import Activation, TrainingRun

    settings.ARTIFACTS_DIR = artifacts_dir
    config = json.loads((tiny_run_folder / "config.json").read_text())
    run = TrainingRun.objects.create(
        name="tiny", created_by=staff, status=TrainingRun.Status.COMPLETED, config=config,
        artifacts=str(tiny_run_folder.relative_to(artifacts_dir)),
        evaluation={"per_user": [{"user_id": "web-alice", "seen": True, "n": 4, "accuracy": 0.75, "margin": 0.1,
                                  "group": None}]},
        user_map=[{"user_id": "(generic)", "x": 0.0, "y": 0.0, "generic": True},
                  {"user_id": "web-alice", "x": 1.0, "y": 0.0, "generic": False},
                  {"user_id": "web-sim-a", "x": 1.2, "y": 0.1, "generic": False},
                  {"user_id": "web-sim-b", "x": -1.0, "y": 0.5, "generic": False}])
    Activation.objects.create(run=run, activated_by=staff)
    return run
