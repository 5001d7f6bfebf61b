"""Shared pieces for the P-RLHF core tests: the tiny model loaded fresh per test."""

import pytest
import torch


@pytest.fixture
def tiny(tiny_model_path):
    """(model, tokenizer) for the tiny random Llama, fp32, eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    return model, tokenizer


def small_pairs(n_users: int = 3, per_user: int = 4):
    """Short replies (a few tokens) so a training step on the tiny model takes well under a second."""
    from trainer.core.data import Pair

    topics = ["rivers", "bread", "chess", "rain", "jazz", "tea", "maps", "owls"]
    pairs = []
    for u in range(n_users):
        for c in range(per_user):
            t = topics[(u + c) % len(topics)]
            good, bad = (f"Short: {t}.", f"A long answer about {t}, with details.")
            if u % 2:
                good, bad = bad, good
            pairs.append(Pair(f"user{u + 1}", [{"role": "user", "content": f"Tell me about {t}."}],
                              [{"role": "assistant", "content": good}], [{"role": "assistant", "content": bad}],
                              conversation_id=f"u{u}-c{c}"))
    return pairs


def fast_config(**overrides):
    from trainer.core.config import TrainConfig

    values = dict(batch_size=4, micro_batch_size=2, epochs=1.0, lr_lora=1e-3, lr_user=1e-2, warmup_steps=0,
                  log_every=1, n_user_tokens=4, seed=0)
    values.update(overrides)
    return TrainConfig(**values)
