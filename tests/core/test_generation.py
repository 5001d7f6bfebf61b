import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from trainer.core.generation import _Detokenizer, generate_text, stream_generate
from trainer.core.sequences import encode_prompt, prefix_ids

MESSAGES = [{"role": "user", "content": "Tell me about rivers."}]


@pytest.fixture(scope="module")
def sharp(tiny_model_path):
    """The tiny architecture with large random weights: greedy decoding varies instead of repeating '\\n'."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    config = AutoConfig.from_pretrained(tiny_model_path)
    config.initializer_range = 0.3
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval(), tokenizer


def _soft(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, model.config.vocab_size, (10,), generator=g)
    return model.get_input_embeddings().weight[rows].detach().clone()  # (10, H)


def test_greedy_stream_matches_hf_generate_with_the_same_ids(sharp):
    model, tokenizer = sharp
    ids = prefix_ids(tokenizer) + encode_prompt(tokenizer, MESSAGES).ids
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=24, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
    expected = tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
    assert len(set(out[0, len(ids):].tolist())) > 5  # a varied continuation, not one repeated token
    assert generate_text(model, tokenizer, MESSAGES, temperature=0, max_new_tokens=24) == expected


def test_cached_decoding_with_soft_prompt_matches_recomputing_everything(sharp):
    model, tokenizer = sharp
    soft = _soft(model)
    ids = prefix_ids(tokenizer) + encode_prompt(tokenizer, MESSAGES).ids
    emb = model.get_input_embeddings()
    generated: list[int] = []
    with torch.no_grad():
        for _ in range(12):  # no cache: the whole sequence every step, soft prompt right after BOS
            embeds = torch.cat([emb(torch.tensor(ids[:1])), soft, emb(torch.tensor(ids[1:] + generated))])
            logits = model(inputs_embeds=embeds.unsqueeze(0)).logits[0, -1]
            generated.append(int(logits.argmax()))
    expected = tokenizer.decode(generated, skip_special_tokens=True)
    assert generate_text(model, tokenizer, MESSAGES, soft_prompt=soft, temperature=0, max_new_tokens=12) == expected
    assert generate_text(model, tokenizer, MESSAGES, temperature=0, max_new_tokens=12) != expected


def test_should_stop_halts_before_the_next_token(sharp):
    model, tokenizer = sharp
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 3

    pieces = list(stream_generate(model, tokenizer, MESSAGES, temperature=0, max_new_tokens=50, should_stop=stop))
    assert len(calls) == 4
    assert 1 <= len(pieces) <= 3


def test_seeded_sampling_repeats_and_different_seeds_differ(sharp):
    model, tokenizer = sharp
    soft = _soft(model)
    a = generate_text(model, tokenizer, MESSAGES, soft_prompt=soft, seed=7, max_new_tokens=16)
    b = generate_text(model, tokenizer, MESSAGES, soft_prompt=soft, seed=7, max_new_tokens=16)
    c = generate_text(model, tokenizer, MESSAGES, soft_prompt=soft, seed=8, max_new_tokens=16)
    assert a == b and a != c


def test_generation_stops_at_eos(sharp, monkeypatch):
    model, tokenizer = sharp
    ids = prefix_ids(tokenizer) + encode_prompt(tokenizer, MESSAGES).ids
    with torch.no_grad():
        first = int(model(torch.tensor([ids])).logits[0, -1].argmax())
    monkeypatch.setattr(model.generation_config, "eos_token_id", [first])  # the first greedy token is now an EOS
    assert list(stream_generate(model, tokenizer, MESSAGES, temperature=0, max_new_tokens=10)) == []


def test_detokenizer_never_yields_half_a_multibyte_character(sharp):
    _, tokenizer = sharp
    text = "naïve café 日本語 👍🏽 done"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    detok = _Detokenizer(tokenizer)
    deltas = [detok.push(i) for i in ids]
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)
    assert len([d for d in deltas if d]) < len(ids)  # some tokens were held back mid-character
