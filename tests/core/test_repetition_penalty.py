"""The repetition penalty: worked by hand, and in a batch it changes only the row that asks for it."""

import torch

from trainer.core.batch_generation import GenerationRequest, generate_batch, penalise
from trainer.core.loop import load_base


def test_a_seen_token_loses_by_the_penalty_whatever_its_sign():
    logits = torch.tensor([2.0, -1.0, 3.0, 0.5])
    seen = torch.tensor([True, True, False, False])
    penalise(logits, seen, 2.0)
    torch.testing.assert_close(logits, torch.tensor([1.0, -2.0, 3.0, 0.5]))


def test_in_a_batch_only_the_penalised_row_changes(tiny_model_path, monkeypatch):
    import trainer.core.batch_generation as batching

    monkeypatch.setattr(batching, "_eos_ids", lambda model, tokenizer: set())
    lm, tokenizer = load_base(str(tiny_model_path))

    def texts(penalty: float) -> tuple[str, str]:
        plain = GenerationRequest([{"role": "user", "content": "Hi"}], max_new_tokens=24, temperature=0.0)
        other = GenerationRequest([{"role": "user", "content": "Hi"}], max_new_tokens=24, temperature=0.0,
                                  repetition_penalty=penalty)
        generate_batch(lm, tokenizer, [plain, other])
        return "".join(plain.stream()), "".join(other.stream())

    plain, same = texts(1.0)
    assert plain == same
    plain_again, penalised = texts(5.0)
    assert plain_again == plain and penalised != plain


def test_the_end_of_turn_token_is_never_penalised_though_every_templated_message_ends_with_it(tiny_model_path,
                                                                                              monkeypatch):
    import trainer.core.batch_generation as batching

    lm, tokenizer = load_base(str(tiny_model_path))
    eos = batching._eos_ids(lm, tokenizer)
    request = GenerationRequest([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                                max_new_tokens=3, temperature=0.0, repetition_penalty=1.5)
    masks = []
    real = batching.penalise
    monkeypatch.setattr(batching, "penalise", lambda logits, seen, p: masks.append(seen.clone()) or real(logits,
                                                                                                       seen, p))
    generate_batch(lm, tokenizer, [request])
    prompt = set(request.prompt_ids)
    assert eos & prompt, "the templated prompt should hold the end-of-turn token"
    assert masks and all(not mask[sorted(eos)].any() for mask in masks)
    assert all(mask[sorted(prompt - eos)].all() for mask in masks)
