import time

import pytest

from trainer.core import provision


def test_the_bundled_model_converts_into_a_normal_transformers_folder(bundled_model_path):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(bundled_model_path)
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (30, 576, 49152)
    assert not hasattr(config, "quantization_config")
    assert (bundled_model_path / "model.safetensors").is_file()


def test_converting_again_does_nothing(bundled_model_path):
    before = (bundled_model_path / "model.safetensors").stat().st_mtime_ns
    started = time.perf_counter()
    again = provision.convert_bundled(bundled_model_path.parent.parent, log=lambda *_: None)
    assert again == bundled_model_path
    assert time.perf_counter() - started < 1.0
    assert (bundled_model_path / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.slow
def test_the_converted_model_answers_sensibly(bundled_model_path):
    """The real bundled model, greedy: a coherent English answer, not noise."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.core.generation import generate_text

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_path)
    model = AutoModelForCausalLM.from_pretrained(bundled_model_path).eval()
    text = generate_text(model, tokenizer, [{"role": "user", "content": "What is the capital of France?"}],
                         max_new_tokens=20, temperature=0)
    assert "Paris" in text


def test_an_unprovisioned_bundled_model_says_which_command_to_run(tmp_path):
    with pytest.raises(provision.ProvisionError, match="python manage.py provision_model"):
        provision.resolve("bundled", tmp_path)


def test_a_folder_without_config_is_refused(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(provision.ProvisionError, match="without config.json"):
        provision.resolve(str(tmp_path / "weights"), tmp_path)


def test_an_unreachable_hub_model_gets_a_plain_explanation(monkeypatch, tmp_path):
    import huggingface_hub.constants

    # The hub client reads HF_HUB_OFFLINE once at import; offline is what this machine is anyway.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    location = provision.resolve("someone/not-cached-model", tmp_path)
    with pytest.raises(provision.ProvisionError, match="needs internet access once"):
        provision.check_loadable(location)
