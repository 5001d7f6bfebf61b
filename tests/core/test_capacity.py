"""bench capacity and bench gpu's bookkeeping, without measuring anything: the capacity plan traces every figure to a
measured row or to a shape's config, and the capacity page is the command's own output; bench gpu marks every row
of a shape it cannot run with the reason, judges a run over several processes against its tolerance, and fits the
memory estimate's factors from a kept table without building a model."""

import json
import re

import pytest

from bench import capacity, gpu, gpu_rows, shapes
from trainer.core import memory

MEASURED = "`([a-z0-9.-]+/[^`]+)`"  # a row id (or a row id ending in /*) named in a line


def value_or_reason(markdown: str, shape: str) -> list[str]:
    """The cells of ``shape``'s lines in a bench gpu table that should hold a figure and hold neither a figure nor
    "not measured: why" (empty when every line is filled)."""
    value_columns = {"pairs/s", "outcome", "transformers tokens/s", "vLLM tokens/s", "value"}
    header, bad = [], []
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or set(line) <= set("|-"):
            continue
        if cells[0] == "shape":
            header = cells
            continue
        if cells[0] != shape:
            continue
        columns = [c for c in header if c in value_columns]
        assert columns, f"a table with no value column: {header}"
        for column in columns:
            cell = cells[header.index(column)]
            if not re.match(r"^(\d|not measured: \S|ran|out of memory)", cell) or "no row (" in cell:
                bad.append(f"{column}: {cell!r} in {line}")
    return bad


def cpu_table(**extra_rows) -> dict:
    """A bench gpu table of the bundled model measured on a small CPU: training, serving and the merged folder."""
    rows = {
        "bundled/train/P-DPO/bf16/plain": {"pairs_per_second": 0.25},
        "bundled/train/P-DPO/fp32/plain": {"pairs_per_second": 0.1},
        "bundled/merged": {"seconds": 1.0, "bytes": 541_614_977},
        **{f"bundled/serve/hf/{n}": {"tokens_per_second": 10.0 * n, "first_token_median": 0.1 * n,
                                     "first_token_max": 0.1 * n} for n in gpu_rows.COUNTS},
        **extra_rows,
    }
    return {"device": {"device": "cpu", "kind": "cpu", "gpus": 0, "memory": 24 * 2**30, "describe": "a test CPU"},
            "rows": {row_id: {"id": row_id, **row} for row_id, row in rows.items()}}


def lines_of(text: str, shape: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"| {shape} |")]


def test_the_capacity_page_is_what_the_command_prints_from_the_kept_measurements():
    page = capacity.PAGE.read_text()
    assert page.count(capacity.BEGIN) == page.count(capacity.END) == 1
    kept = page.split(capacity.BEGIN)[1].split(capacity.END)[0].strip()
    text, _ = capacity.report(sorted(capacity.MEASUREMENTS.glob("gpu-*.json")))
    assert kept == text.strip(), "docs/capacity.md is stale: run python -m bench capacity --write-doc"
    assert "| benchmark | figure |" not in page  # the figures' summary belongs to the terminal, not the page


def test_write_doc_replaces_only_what_stands_between_the_markers(tmp_path):
    page = tmp_path / "capacity.md"
    page.write_text(f"# Prose\n\nbefore\n\n{capacity.BEGIN}\nold tables\n{capacity.END}\n\nafter\n")
    capacity.write_doc(page, "new tables\n")
    assert page.read_text() == f"# Prose\n\nbefore\n\n{capacity.BEGIN}\n\nnew tables\n\n{capacity.END}\n\nafter\n"
    page.write_text("no markers")
    with pytest.raises(SystemExit, match="needs one line"):
        capacity.write_doc(page, "new tables\n")


def test_every_projection_names_the_measured_row_it_scales_from():
    table = cpu_table()
    text, figures = capacity.plan(table)
    rows = table["rows"]
    for shape in capacity.shapes_planned():
        lines = lines_of(text, shape)
        assert len(lines) == 3, f"{shape} is missing from a table: {lines}"  # training, serving, memory and disk
        training, serving, storage = lines
        for line in (training, serving):
            named = re.findall(MEASURED, line.rsplit("|", 2)[1])
            assert named, f"{shape}: no measured row named in {line}"
            for row_id in named:  # every row named exists and holds a figure
                found = [r for r in rows.values() if re.fullmatch(re.escape(row_id).replace(r"\*", ".*"), r["id"])]
                assert found and all("not_measured" not in r for r in found), row_id
        if shape != "bundled":
            assert f"not measured: bench gpu did not run {shape} on this device; scaled by parameters" in training
            assert "*scaled*" in serving and "not measured: bench gpu did not run" in serving
        assert f"`bench/architectures/{shape}.json`" in storage or "BUNDLED_SHAPE" in storage
    # the fastest P-DPO row is the one used, and a scaled shape divides it by the ratio of parameters
    ratio = capacity.params("bundled") / capacity.params("llama-1b")
    assert f"| {0.25 * ratio:.3g} |" in lines_of(text, "llama-1b")[0]
    assert "measured: `bundled/train/P-DPO/bf16/plain`" in lines_of(text, "bundled")[0]
    assert len(figures) == len(capacity.shapes_planned())


def test_serving_of_a_shape_not_measured_says_why_and_scales_the_times_by_parameters():
    table = cpu_table(**{f"llama-8b/serve/hf/{n}": {"not_measured": "its fp32 weights alone (28 GiB) do not fit "
                                                                     "this device"} for n in gpu_rows.COUNTS})
    text, _ = capacity.plan(table)
    assert "8 people, 80 tokens/s" in lines_of(text, "bundled")[1]  # 0.8 s at 8, 3.2 s at 32
    serving = lines_of(text, "llama-1b")[1]
    ratio = capacity.params("llama-1b") / capacity.params("bundled")
    assert f"*scaled*: 1 person, {10 / ratio:.0f} tokens/s" in serving  # 0.1 s x 7.98 is under 1 s, 0.8 x 7.98 not
    big = lines_of(text, "llama-8b")[1]
    assert "not measured: its fp32 weights alone (28 GiB) do not fit this device" in big
    assert "none under 1 s (one person's first token" in big
    # an engine measured for no shape on the device: every shape still has its line, saying so
    text, _ = capacity.plan(cpu_table(**{f"bundled/serve/vllm/{n}": {"not_measured": "no vLLM environment here"}
                                         for n in gpu_rows.COUNTS}))
    assert "| bundled | 8 people, 80 tokens/s | not measured: no vLLM environment here |" in text
    assert "vLLM: no serving row of any shape measured on this device" in lines_of(text, "qwen-1.5b")[1]


def test_sizes_are_arithmetic_on_the_config_with_the_measured_folder_beside():
    text, _ = capacity.plan(cpu_table())
    bundled = lines_of(text, "bundled")[2]
    assert "| 576 | 22 KiB | 219.7 MiB | 21.5 GiB | 513.1 MiB | 516.5 MiB (`bundled/merged`) |" in bundled
    eight = lines_of(text, "llama-8b")[2]
    person = capacity.USER_TOKENS * 4096 * 4  # 10 vectors of Llama 3.1 8B's width in fp32
    assert person == 160 * 2**10 and f"| 4,096 | {capacity.size(person)} |" in eight
    assert "| not measured: bench gpu did not run llama-8b on this device |" in eight


def test_the_bundled_shape_written_in_the_benchmark_is_the_bundled_folders(bundled_model_path):
    assert memory.shape_of(bundled_model_path) == gpu_rows.BUNDLED_SHAPE
    assert gpu_rows.model_shape("llama-tiny").params == shapes.params_of("llama-tiny", gpu_rows.BUNDLED_VOCAB)


def test_a_shape_that_cannot_run_says_why_on_every_row_and_every_table_cell(tmp_path, monkeypatch):
    small = {"device": "cpu", "kind": "cpu", "gpus": 0, "memory": 2**20, "describe": "a 1 MiB test CPU"}
    monkeypatch.setattr(gpu, "device_info", lambda: small)
    gpu.main(["--shapes", "llama-tiny", "--out", str(tmp_path / "small")])
    [kept] = (tmp_path / "small").glob("gpu-*.json")
    rows = json.loads(kept.read_text())["rows"]
    assert sorted(rows) == sorted(gpu.shape_ids("llama-tiny", False, 0))
    assert {r["not_measured"].split(" (")[0] for r in rows.values()} == {"its fp32 weights alone"}
    assert value_or_reason(kept.with_suffix(".md").read_text(), "llama-tiny") == []

    def cannot_build(*_args):
        raise OSError("no space left on device")

    monkeypatch.setattr(gpu, "device_info", lambda: {**small, "memory": 2**40})
    monkeypatch.setattr(gpu, "shape_folder", cannot_build)
    gpu.main(["--shapes", "llama-tiny", "--out", str(tmp_path / "broken")])
    [kept] = (tmp_path / "broken").glob("gpu-*.json")
    rows = json.loads(kept.read_text())["rows"]
    assert rows["llama-tiny/processes/2"]["not_measured"] == "the shape could not be built: no space left on device"
    assert "not measured: the shape could not be built" in kept.with_suffix(".md").read_text()
    assert value_or_reason(kept.with_suffix(".md").read_text(), "llama-tiny") == []


def test_a_loss_curve_over_several_processes_is_judged_against_the_tolerance():
    from bench.gpu_children import loss_agreement

    one = [0.6931, 0.6920, 0.6900]
    close = loss_agreement(one, [0.6931, 0.6922, 0.6905])
    assert close["loss_difference"] == pytest.approx(5e-4) and close["loss_within_tolerance"] is True
    assert close["loss_moved"] == pytest.approx(0.0031)
    far = loss_agreement(one, [0.6931, 0.6950, 0.6900])
    assert far["loss_difference"] == pytest.approx(3e-3) and far["loss_within_tolerance"] is False
    short = loss_agreement(one, one[:2])
    assert short["loss_within_tolerance"] is False and "3 and 2 logged steps" in short["loss_note"]

    row = {"id": "bundled/processes/2", "pairs_per_second": 1.0, "speed_up": 1.9}
    assert "tolerance 0.001: met; one process's curve moved 3.1e-03" in gpu.loss_cell({**row, **close})
    assert "tolerance 0.001: **not met**" in gpu.loss_cell({**row, **far})
    assert "not compared: the curves have 3 and 2 logged steps" in gpu.loss_cell({**row, **short})
    kept_before = {**row, "loss_difference": 6e-6}  # a row kept before the verdict was recorded
    assert gpu_rows.loss_verdict(kept_before) is True and "met" in gpu.loss_cell(kept_before)


def training_rows_from(factors: memory.Factors, shape_name: str) -> dict:
    """Training rows as bench gpu keeps them, with the peaks ``factors`` give on ``shape_name``."""
    shape = gpu_rows.model_shape(shape_name)
    rows = {}
    for micro, length, prompt, checkpointing, bf16, loss in [
            (1, 256, 128, False, True, "P-DPO"), (2, 256, 200, False, False, "DPO"),
            (4, 512, 100, False, True, "P-DPO"), (2, 512, 400, True, True, "DPO"),
            (4, 512, 256, True, False, "P-DPO"), (8, 128, 32, True, True, "DPO")]:
        kwargs = dict(micro_batch_size=micro, max_length=length, max_prompt_length=prompt,
                      personalized=loss == "P-DPO", gradient_checkpointing=checkpointing, bf16=bf16)
        peak = memory.estimate(shape, **kwargs, factors=factors).peak
        row_id = f"{shape_name}/train/{loss}/{'bf16' if bf16 else 'fp32'}/{micro}-{length}-{checkpointing}"
        rows[row_id] = {"id": row_id, "shape": shape_name, "pairs_per_second": 1.0, "estimate_kwargs": kwargs,
                        "before": factors.base + shape.params * memory.FLOAT, "peak": peak}
    return rows


def test_fit_from_a_kept_table_recovers_the_factors_and_keeps_them_where_told(tmp_path, monkeypatch):
    true = memory.Factors(base=0.5 * memory.GIB, per_token=1.2, attention=0.3, logits=0.8, checkpointed=2.5,
                          source="test")
    device = {"device": "cuda", "kind": "Test GPU 80GB", "gpus": 1, "memory": 80 * 2**30, "describe": "a test GPU"}
    table = tmp_path / "gpu-test-gpu-80gb.json"
    table.write_text(json.dumps({"device": device, "rows": {**training_rows_from(true, "llama-tiny"),
                                                           "llama-tiny/merged": {"id": "llama-tiny/merged"}}}))
    monkeypatch.setattr(gpu, "shape_folder", lambda *a: pytest.fail("the fit built a model"))
    monkeypatch.setattr(memory, "FACTORS_FILE", tmp_path / "untouched.json")
    factors_out = tmp_path / "out" / "memory_factors.json"
    factors_out.parent.mkdir()
    gpu.main(["--fit-from", str(table), "--factors", str(factors_out)])
    kept = json.loads(factors_out.read_text())["Test GPU 80GB"]
    for field in ("base", "per_token", "attention", "logits", "checkpointed"):
        assert kept[field] == pytest.approx(getattr(true, field), rel=1e-6)
    assert "6 peaks" in kept["source"] and table.name in kept["source"]
    assert not memory.FACTORS_FILE.exists()


def test_a_cpu_fit_is_printed_and_never_kept(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(memory, "FACTORS_FILE", tmp_path / "factors.json")
    cpu = {"device": "cpu", "kind": "cpu", "gpus": 0, "memory": 24 * 2**30, "describe": "a test CPU"}
    fitted = gpu.fit_memory(cpu, training_rows_from(memory.CPU, "llama-tiny"), table_name="gpu-test.json")
    assert fitted.per_token == pytest.approx(memory.CPU.per_token)
    assert "within 20 % of 6 of 6 peaks" in capsys.readouterr().out
    assert not memory.FACTORS_FILE.exists()  # factors_for("cpu") is memory.CPU: an entry would go unread
    with pytest.raises(ValueError, match="memory.CPU"):
        memory.save_factors("cpu", fitted)
    assert gpu.fit_memory(cpu, {}, table_name="empty.json") is None
