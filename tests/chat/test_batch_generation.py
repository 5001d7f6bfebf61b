"""Batched generation: rows with different soft prompts share a forward pass
and each gets exactly the reply it would get alone."""

import threading

import pytest
import torch

from trainer.core.batch_generation import BatchScheduler, GenerationRequest, generate_batch
from trainer.core.generation import generate_text


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    # Larger random weights than the fixture's, so greedy replies differ per soft prompt.
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)
    return model, AutoTokenizer.from_pretrained(tiny_model_path)


def prompts(model):
    H = model.get_input_embeddings().weight.shape[1]
    g = torch.Generator().manual_seed(1)
    return [([{"role": "user", "content": "Tell me about tea."}], None),
            ([{"role": "user", "content": "Tell me about tea."}], torch.randn(4, H, generator=g)),
            ([{"role": "user", "content": "A much longer question about rivers and maps?"}], torch.randn(4, H, generator=g)),
            ([{"role": "user", "content": "Hi"}], torch.randn(4, H, generator=g))]


def test_a_batch_of_different_users_gives_each_the_reply_it_would_get_alone(tiny):
    model, tokenizer = tiny
    cases = prompts(model)
    alone = [generate_text(model, tokenizer, m, soft_prompt=s, max_new_tokens=8, temperature=0) for m, s in cases]
    requests = [GenerationRequest(m, s, max_new_tokens=8, temperature=0.0) for m, s in cases]
    generate_batch(model, tokenizer, requests)
    together = ["".join(r.stream()) for r in requests]
    assert together == alone
    assert len(set(alone[1:])) > 1  # the soft prompts really change the replies
    assert all(r.batch_size == 4 for r in requests)


def test_the_scheduler_gathers_concurrent_requests_into_one_batch_within_its_wait(tiny):
    model, tokenizer = tiny
    scheduler = BatchScheduler(model, tokenizer, max_batch=8, max_wait=1.0)
    try:
        cases = prompts(model)
        requests = [GenerationRequest(m, s, max_new_tokens=4, temperature=0.0) for m, s in cases]
        threads = [threading.Thread(target=scheduler.submit, args=(r,)) for r in requests]
        for t in threads:
            t.start()
        replies = ["".join(r.stream(timeout=60)) for r in requests]
        assert scheduler.batches == [4]
        assert replies == [generate_text(model, tokenizer, m, soft_prompt=s, max_new_tokens=4, temperature=0)
                           for m, s in cases]  # gathered into one batch, each row still its own reply
    finally:
        scheduler.close()


def test_a_cancelled_row_stops_while_the_others_go_on(tiny):
    model, tokenizer = tiny
    (m1, s1), (m2, s2) = prompts(model)[1:3]
    stopped = GenerationRequest(m1, s1, max_new_tokens=6, temperature=0.0, should_stop=lambda: True)
    going = GenerationRequest(m2, s2, max_new_tokens=6, temperature=0.0)
    generate_batch(model, tokenizer, [stopped, going])
    assert stopped.tokens == 0 and going.tokens > 0


def test_a_long_prompt_gets_a_batch_of_its_own_so_short_ones_do_not_pay_for_it(tiny):
    model, tokenizer = tiny
    scheduler = BatchScheduler(model, tokenizer, max_batch=8, max_wait=1.0)
    try:
        history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "word " * 30}
                   for i in range(40)]
        cases = prompts(model)[:3] + [(history + [{"role": "user", "content": "And now?"}], None)]
        alone = [generate_text(model, tokenizer, m, soft_prompt=s, max_new_tokens=4, temperature=0)
                 for m, s in cases]
        requests = [GenerationRequest(m, s, max_new_tokens=4, temperature=0.0) for m, s in cases]
        for r in requests:
            scheduler.submit(r)
        replies = ["".join(r.stream(timeout=60)) for r in requests]
        assert scheduler.batches == [3, 1]
        assert [r.batch_size for r in requests] == [3, 3, 3, 1]
        assert replies == alone
    finally:
        scheduler.close()
