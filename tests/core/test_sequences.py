import torch
from torch.testing import assert_close

from trainer.core.data import Pair
from trainer.core.policy import encode_pair
from trainer.core.sequences import (
    _reply_logps_from_logits,
    collate,
    embed_inputs,
    encode_prompt,
    encode_reply,
    prefix_ids,
    prompt_embeddings,
    reply_logps,
)


def test_collate_left_pads_and_places_bos_slots_prompt_reply():
    b = collate([([5, 6, 4], [7]), ([5], [8, 9])], prefix=[1], n_slots=2, pad_id=0)
    assert_close(b.input_ids, torch.tensor([[1, 0, 0, 5, 6, 4, 7], [0, 1, 0, 0, 5, 8, 9]]))
    assert_close(b.attention_mask, torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1]]))
    assert_close(b.position_ids, torch.tensor([[0, 1, 2, 3, 4, 5, 6], [0, 0, 1, 2, 3, 4, 5]]))
    assert_close(b.slot_mask, torch.tensor([[0, 1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0]]).bool())
    assert_close(b.labels, torch.tensor([[0, 7], [8, 9]]))
    assert_close(b.label_mask, torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    assert_close(b.reply_index, torch.tensor([[0, 1, 1], [1, 0, 1]]))  # (row, position) of each reply token
    assert collate([([5], [])], prefix=[1], n_slots=0, pad_id=0).reply_index.shape == (2, 0)  # a prompt alone


def test_after_the_first_epoch_a_training_step_asks_the_device_for_nothing_between_log_steps(tiny_model_path):
    from bench.host_syncs import measure, summary

    steps = summary(measure(str(tiny_model_path), 8, 2.0, 4, cancel_check=False))
    assert steps["later epochs, ours"] == 0  # no boolean mask, no .item(): the reply tokens' positions come
    assert steps["first epoch"] > steps["later epochs"]  # from the host; each pair's reference pass reads once


def test_soft_prompt_vectors_land_in_the_slots_and_nowhere_else(tiny):
    model, _ = tiny
    b = collate([([5, 6, 4], [7]), ([5], [8, 9])], prefix=[1], n_slots=2, pad_id=0)
    soft = torch.arange(2 * 2 * 64, dtype=torch.float32).view(2, 2, 64)  # (N, T, H)
    e = embed_inputs(model, b, soft)
    assert_close(e[0, 1:3], soft[0])
    assert_close(e[1, 2:4], soft[1])
    table = model.get_input_embeddings().weight
    assert_close(e[1, 1], table[1])  # BOS
    assert_close(e[0, 3], table[5])  # first prompt token


def test_the_embeddings_sent_to_vllm_are_the_rows_training_builds(tiny):
    """One placement for training, the HF path and vLLM: a prompt's embeddings for vLLM equal its row in a
    training batch (BOS, the vectors, the prompt; no padding), with and without vectors."""
    model, tokenizer = tiny
    table = model.get_input_embeddings().weight  # (V, H)
    short, long = (encode_prompt(tokenizer, [{"role": "user", "content": t}]).ids
                   for t in ("Hi", "Tell me about the history of tea in three sentences."))
    soft = torch.randn(2, 4, 64)  # (N, T, H)
    batch = collate([(long, []), (short, [])], prefix=prefix_ids(tokenizer), n_slots=4, pad_id=0)
    rows = embed_inputs(model, batch, soft)  # (2, L, H), the short row left-padded
    assert_close(prompt_embeddings(table, tokenizer, long, soft[0]), rows[0])
    real = batch.attention_mask[1].bool()
    assert_close(prompt_embeddings(table, tokenizer, short, soft[1]), rows[1][real])
    plain = prompt_embeddings(table, tokenizer, short, None)
    assert plain.shape == (1 + len(short), 64)
    assert_close(plain, table[torch.tensor(prefix_ids(tokenizer) + short)])


def test_reply_logps_do_not_depend_on_padding_or_batch_neighbours(tiny):
    model, _ = tiny
    soft = torch.randn(2, 3, 64)
    alone = collate([([5, 6], [8, 9, 10])], prefix=[1], n_slots=3, pad_id=2)
    both = collate([([5, 6], [8, 9, 10]), ([5, 6, 7, 11, 12, 13, 14], [9])], prefix=[1], n_slots=3, pad_id=2)
    with torch.no_grad():
        lp_alone = reply_logps(model, alone, soft[:1])
        lp_both = reply_logps(model, both, soft)
    assert_close(lp_both[:1], lp_alone, atol=1e-5, rtol=1e-5)


def test_chunked_projection_matches_the_logits_route_in_value_and_gradient(tiny):
    model, _ = tiny
    b = collate([([5, 6], [8, 9, 10]), ([5, 6, 7], [9, 3])], prefix=[1], n_slots=2, pad_id=2)
    soft = torch.randn(2, 2, 64, requires_grad=True)
    fast = reply_logps(model, b, soft)
    (g_fast,) = torch.autograd.grad(fast.sum(), soft)
    slow = _reply_logps_from_logits(model, b, embed_inputs(model, b, soft))
    (g_slow,) = torch.autograd.grad(slow.sum(), soft)
    assert_close(fast, slow, atol=1e-4, rtol=1e-5)
    assert_close(g_fast, g_slow, atol=1e-5, rtol=1e-4)


def test_reply_ids_end_with_eos_and_follow_the_prompt(tiny):
    _, tok = tiny
    msgs = [{"role": "user", "content": "Hi"}]
    reply = encode_reply(tok, msgs, [{"role": "assistant", "content": "Hello there"}])
    assert reply[-1] == tok.eos_token_id
    assert tok.decode(reply[:-1]) == "Hello there"
    # BOS (which for ChatML is the template's own <|im_start|>) + prompt + reply is the templated conversation.
    sequence = prefix_ids(tok) + encode_prompt(tok, msgs).ids + reply
    full = tok(tok.apply_chat_template(msgs + [{"role": "assistant", "content": "Hello there"}], tokenize=False),
               add_special_tokens=False).input_ids
    assert full[: len(sequence)] == sequence


def test_a_long_prompt_loses_its_oldest_history_and_keeps_the_reply(tiny):
    _, tok = tiny
    history = []
    for i in range(6):
        history += [{"role": "user", "content": f"question {i} " + "word " * 40},
                    {"role": "assistant", "content": f"answer {i} " + "word " * 40}]
    last = {"role": "user", "content": "and the final question?"}
    pair = Pair("u1", history + [last], [{"role": "assistant", "content": "A full reply that must survive."}],
                [{"role": "assistant", "content": "Another reply."}])
    full = encode_prompt(tok, pair.prompt).ids
    enc = encode_pair(tok, pair, index=0, user_row=1, max_prompt_length=150, max_length=400, use_profile=False,
                      n_slots=10)
    assert len(enc.prompt_ids) <= 150
    assert enc.prompt_tokens_cut == len(full) - len(enc.prompt_ids) > 0
    text = tok.decode(prefix_ids(tok) + enc.prompt_ids)
    assert "final question" in text and "question 0" not in text  # newest kept, oldest gone
    assert text.startswith("<|im_start|>system")  # the cut drops whole messages after the system prompt
    assert tok.decode(enc.chosen_ids[:-1]) == "A full reply that must survive."
    assert enc.reply_tokens_cut == 0


def test_a_single_huge_message_is_cut_from_the_left(tiny):
    _, tok = tiny
    msgs = [{"role": "user", "content": "start " + "filler " * 300 + "END"}]
    enc = encode_prompt(tok, msgs, max_prompt_length=50)
    assert len(enc.ids) == 50 and enc.tokens_cut > 250
    assert tok.decode(enc.ids).endswith("END<|im_end|>\n<|im_start|>assistant\n")


def test_profile_text_goes_into_the_prompt_only_when_given(tiny):
    _, tok = tiny
    msgs = [{"role": "user", "content": "Hi"}]
    with_profile = tok.decode(encode_prompt(tok, msgs, profile="I like short answers.").ids)
    assert "About the user: I like short answers." in with_profile
    assert "About the user" not in tok.decode(encode_prompt(tok, msgs).ids)
