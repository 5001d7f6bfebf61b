"""The personalization proof on the tiny model: two opposing groups, 70 % / 30 %.

Held-out conversations of seen users: P-DPO must reach >= 90 % implicit-reward
accuracy in BOTH groups; plain DPO on the same pairs can only follow the
majority, so it stays near 70 % overall and fails the minority group.
"""

import pytest

from trainer.core.config import TrainConfig, plain_dpo
from trainer.core.data import split_pairs
from trainer.core.evaluate import evaluate
from trainer.core.loop import train
from trainer.core.synthetic import DEFAULT_PROMPTS, make_pairs, sample_population


@pytest.mark.slow
def test_p_dpo_serves_both_groups_where_plain_dpo_serves_the_majority(tiny_model_path):
    people = sample_population(10, dimension="length", majority_pole="detailed", majority_share=0.7, seed=0)
    pairs = make_pairs(people, DEFAULT_PROMPTS, conversations_per_user=10, seed=1, detailed_sentences=(2, 3))
    split = split_pairs(pairs, unseen_fraction=0.0, test_fraction=0.3, seed=0)
    assert len(split.test_seen) >= 25
    config = TrainConfig(batch_size=8, micro_batch_size=8, epochs=2.0, lr_lora=1e-3, lr_user=1e-2,
                         warmup_steps=0, lora_dropout=0.0, log_every=100, seed=0)
    results = {}
    for name, cfg in (("p-dpo", config), ("dpo", plain_dpo(config))):
        run = train(cfg, str(tiny_model_path), split.train, log=lambda *_: None)
        results[name] = evaluate(run.model, run.tokenizer, run.user_index, cfg, split.test_seen)
    p, d = results["p-dpo"], results["dpo"]
    assert p.groups["length:detailed"]["accuracy"] >= 0.9
    assert p.groups["length:concise"]["accuracy"] >= 0.9
    assert d.groups["length:concise"]["accuracy"] <= 0.2  # the minority is served against its will
    assert d.groups["length:detailed"]["accuracy"] >= 0.8
    assert abs(d.accuracy - 0.7) <= 0.15  # the majority rule
