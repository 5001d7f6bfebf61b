"""bench shapes and bench gpu: random-weight models of published shapes, and the one-call scale benchmark run on
this CPU with the smallest shape and a small budget; the memory estimate's factors fitted and kept per device."""

import json
import os
import subprocess
import sys

import pytest

from bench import gpu_rows as gpu, shapes
from tests.core.test_capacity import value_or_reason
from trainer.core import memory
from trainer.core.config import TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def built(bundled_model_path, tmp_path_factory):
    data = tmp_path_factory.mktemp("scale")
    for name in shapes.SMALLEST:
        shapes.build(name, data / "shapes", tokenizer_source=str(bundled_model_path), log=lambda *a, **k: None)
    return data


def test_a_shape_is_its_published_config_with_the_bundled_vocabulary(built, bundled_model_path):
    from transformers import AutoConfig, AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(bundled_model_path))
    for name in shapes.SMALLEST:
        folder = built / "shapes" / name
        written = shapes.available()[name]["config"]
        config = AutoConfig.from_pretrained(folder)
        assert config.model_type == written["model_type"]
        for field in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                      "num_key_value_heads"):
            assert getattr(config, field) == written[field]
        assert config.vocab_size == vocab
        mark = shapes.marker(folder)
        assert mark["random_weights"] is True and "speed and memory only" in mark["note"]
        # the estimate's parameter count is the shape's (Qwen's attention biases aside)
        assert abs(mark["parameters"] - shapes.params_of(name, vocab)) <= 1000
        assert memory.shape_of(folder).params == shapes.params_of(name, vocab)


def test_a_folder_stopped_half_way_is_built_again_and_an_unknown_shape_names_the_known_ones(built, bundled_model_path):
    folder = built / "shapes" / "llama-tiny"
    (folder / "shape.json").unlink()  # as if the build was killed before its last write
    assert shapes.marker(folder) is None
    proc = subprocess.run([sys.executable, "-m", "bench", "shapes", "--shapes", "llama-tiny", "--out",
                           str(built / "shapes"), "--tokenizer", str(bundled_model_path)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shapes.marker(folder)["shape"] == "llama-tiny" and f"llama-tiny: {folder}" in proc.stdout
    with pytest.raises(SystemExit, match="llama-8b"):
        shapes.build("llama-9000b", built / "shapes")


def test_the_published_large_shapes_have_their_published_sizes():
    # Llama 3.2 1B, Llama 3.1 8B and Qwen2.5 1.5B with their own vocabularies: the parameter counts their cards give
    assert round(shapes.params_of("llama-1b", 128256) / 1e9, 2) == 1.24
    assert round(shapes.params_of("llama-8b", 128256) / 1e9, 2) == 8.03
    assert round(shapes.params_of("qwen-1.5b", 151936) / 1e9, 2) == 1.54


def test_the_scale_benchmark_on_a_cpu_fills_every_row_and_keeps_what_it_measured(built, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "DATA_DIR": str(built), "PYTHONPATH": REPO}
    cmd = [sys.executable, "-m", "bench", "gpu", "--shapes", "llama-tiny", "--budget-minutes", "1.2",
           "--max-length", "64", "--out", str(out), "--vllm-python", str(tmp_path / "no-vllm")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: a target missed, which the table shows
    [found] = out.glob("gpu-*-64-tokens.json")
    rows = json.loads(found.read_text())["rows"]
    expected = ([r["id"] for r in gpu.train_rows("llama-tiny", on_gpu=False)] + ["llama-tiny/oom"]
                + gpu.serve_ids("llama-tiny") + gpu.multi_ids("llama-tiny", 0))
    assert sorted(rows) == sorted(expected)
    for row_id, row in rows.items():  # a value, or the reason there is none
        assert row.get("not_measured") or any(k in row for k in ("pairs_per_second", "tokens_per_second", "seconds"))
    first = rows["llama-tiny/train/P-DPO/fp32/plain"]
    assert first["pairs_per_second"] > 0 and first["peak"] > first["before"] > 0 and first["estimate"]
    assert rows["llama-tiny/serve/hf/1"]["tokens_per_second"] > 0
    assert rows["llama-tiny/merged"]["bytes"] > 0
    assert rows["llama-tiny/serve/vllm/8"]["not_measured"].startswith("no vLLM environment")
    assert "several GPUs" in rows["llama-tiny/processes/2"]["not_measured"]  # none asked for with --processes
    assert "a CPU" in rows["llama-tiny/oom"]["not_measured"] or "refuses none" in rows["llama-tiny/oom"]["not_measured"]
    table = found.with_suffix(".md").read_text()
    assert table.count("| llama-tiny |") == len(expected) - len(gpu.COUNTS)  # a serving line holds both engines
    assert value_or_reason(table, "llama-tiny") == []  # every line's figure, or "not measured: why"
    assert "| not measured: no vLLM environment here" in table
    assert "64 tokens instead of the start form's lengths" in table

    # A second call keeps the measured rows and measures only what the budget left out.
    before = {k: v for k, v in rows.items() if "not_measured" not in v}
    proc = subprocess.run([*cmd[:6], "0.05", *cmd[7:]], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    again = json.loads(found.read_text())["rows"]
    assert {k: again[k] for k in before} == before


def test_factors_fitted_to_peaks_recover_the_factors_that_made_them():
    true = memory.Factors(base=0.3 * memory.GIB, per_token=1.4, attention=0.2, logits=0.9, checkpointed=3.0,
                          source="test")
    shape = memory.ModelShape(hidden=256, intermediate=1024, layers=4, heads=4, kv_heads=2, vocab=8000, tied=True)
    rows = []
    for micro, length, prompt, personalized, checkpointing, bf16 in [
            (1, 256, 128, True, False, False), (2, 256, 128, True, False, True), (4, 512, 320, True, False, False),
            (2, 770, 470, False, False, False), (2, 512, 100, True, True, False), (4, 512, 400, True, True, True),
            (1, 1024, 900, True, False, False), (8, 128, 64, False, True, False)]:
        kwargs = dict(micro_batch_size=micro, max_length=length, max_prompt_length=prompt, personalized=personalized,
                      gradient_checkpointing=checkpointing, bf16=bf16)
        per_token, attention, logits = memory.features(shape, **{k: v for k, v in kwargs.items() if k != "bf16"})
        scale = 0.5 if bf16 else 1.0
        activations = scale * ((true.checkpointed if checkpointing else true.per_token) * per_token
                               + true.attention * attention + true.logits * logits)
        before = true.base + shape.params * memory.FLOAT
        rows.append((shape, kwargs, {"before": before, "peak": before + activations}))
    fitted = memory.fit_factors(rows, source="test fit")
    for field in ("per_token", "attention", "logits", "checkpointed"):
        assert getattr(fitted, field) == pytest.approx(getattr(true, field), rel=1e-6)
    assert fitted.base == pytest.approx(true.base)


def test_a_gpu_is_estimated_with_its_own_factors_once_kept_and_says_so_before(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "FACTORS_FILE", tmp_path / "factors.json")
    shape = memory.ModelShape(hidden=2048, intermediate=8192, layers=16, heads=32, kv_heads=8, vocab=49152, tied=True)
    config = TrainConfig()  # the paper's: bf16 left to the device
    guess = memory.estimate_config(shape, config, "Test GPU 80GB")
    assert not guess.factors.calibrated and "uncalibrated for Test GPU 80GB" in guess.factors.source
    on_cpu = memory.estimate_config(shape, config, "cpu")
    assert guess.activations == pytest.approx(on_cpu.activations / 2)  # bf16 on a GPU, fp32 on a CPU
    own = memory.Factors(base=1.0 * memory.GIB, per_token=0.5, attention=0.0, logits=0.5, checkpointed=2.0,
                         source="fitted to 8 peaks on Test GPU 80GB")
    memory.save_factors("Test GPU 80GB", own)
    kept = memory.estimate_config(shape, config, "Test GPU 80GB")
    assert kept.factors == own and kept.factors.calibrated
    assert kept.base == own.base and kept.per_token == pytest.approx(guess.per_token * 0.5 / memory.CPU.per_token)
    assert memory.estimate_config(shape, config, "cpu").factors == memory.CPU  # the CPU's are untouched
