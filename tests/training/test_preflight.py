"""Before a run starts: the memory estimate, the workers' device reports, the refusal with the change that
fits, and the start form's defaults for the workers' device."""

import dataclasses
import os
import re

import pytest

from trainer import devices, preflight, services
from trainer.core import memory
from trainer.core.config import TrainConfig
from trainer.core.presets import PRESETS
from trainer.models import TrainingRun

GIB = memory.GIB
SMOL = memory.ModelShape(hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, vocab=49152, tied=True)


@pytest.fixture
def bundled_base(settings, bundled_model_path):
    settings.BASE_MODEL = str(bundled_model_path)
    return bundled_model_path


def publish(name: str, *, ram_gib: float = 0, gpus: int = 0, gpu_gib: float = 0, queues=("train",),
            gpu_name: str = ""):
    devices.report_publish(devices.DeviceReport(
        worker=name, queues=list(queues), device="cuda" if gpus else "cpu", gpus=gpus,
        gpu_memory=int(gpu_gib * GIB), gpu_free=int(gpu_gib * GIB), memory_total=int(ram_gib * GIB),
        memory_available=int(ram_gib * GIB), cpus=2, gpu_name=gpu_name))


@pytest.fixture
def reports(test_redis):
    for key in test_redis.scan_iter(match=devices.KEY + "*"):
        test_redis.delete(key)
    yield publish
    for key in test_redis.scan_iter(match=devices.KEY + "*"):
        test_redis.delete(key)


def test_the_shape_and_features_are_the_arithmetic_written_in_the_docstring(bundled_model_path):
    assert memory.shape_of(bundled_model_path) == SMOL
    assert SMOL.params == 134_515_008  # SmolLM2-135M's parameter count, tied embeddings counted once
    per_token, attention, logits = memory.features(SMOL, micro_batch_size=2, max_length=100, max_prompt_length=60)
    tokens = 2 * 2 * 2 * 100  # micro-batch x (chosen, rejected) x (personal, generic) x length
    assert per_token == tokens * 30 * (7 * 576 + 4 * 1536) * 4
    assert attention == tokens * 100 * 30 * 9 * 4
    assert logits == 2 * 2 * 2 * 40 * 49152 * 4
    plain = memory.features(SMOL, micro_batch_size=2, max_length=100, max_prompt_length=60, personalized=False)
    assert plain == (per_token / 2, attention / 2, logits / 2)  # one pass, not two
    saved = memory.features(SMOL, micro_batch_size=2, max_length=100, max_prompt_length=60,
                            gradient_checkpointing=True)
    assert saved[0] < per_token / 10 and saved[2] == logits


def test_device_reports_are_read_without_cuda_and_expire(reports, settings, test_redis):
    report = devices.report_of_this_machine("train@here", ["train"])
    assert report.memory_total > 0 and report.cpus >= 1 and report.device in ("cpu", "cuda")
    devices.report_publish(report)
    assert [r.worker for r in devices.reports("train")] == ["train@here"]
    assert devices.reports("generate") == []
    assert 0 < test_redis.ttl(devices.KEY + "train@here") <= 3 * settings.BOOKKEEPING_SECONDS


def test_a_gpu_worker_reports_its_gpus_name_read_from_nvidia_smi(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '0, 81559, 80000, NVIDIA H100 80GB HBM3'\necho '1, 81559, 70000, NVIDIA H100 "
                    "80GB HBM3'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    report = devices.report_of_this_machine("train@gpu", ["train"])
    assert (report.device, report.gpus, report.gpu_name, report.kind) == ("cuda", 2, "NVIDIA H100 80GB HBM3",
                                                                          "NVIDIA H100 80GB HBM3")
    assert report.gpu_memory == 81559 * 2**20 and report.gpu_free == 70000 * 2**20


def test_the_estimate_uses_the_gpus_own_factors_once_measured_and_says_when_it_guesses(
        client, staff, bundled_base, reports, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "FACTORS_FILE", tmp_path / "factors.json")
    reports("train-gpu@box", gpus=1, gpu_gib=80, gpu_name="Test GPU 80GB")
    guessed = preflight.check(TrainConfig().to_dict())
    assert not guessed.estimate.factors.calibrated
    from tests.training.test_run_services import FORM_DEFAULTS

    client.force_login(staff)
    page = client.get("/staff/runs/preview/", FORM_DEFAULTS).content.decode()
    assert "The estimate is uncalibrated for Test GPU 80GB" in page
    memory.save_factors("Test GPU 80GB", dataclasses.replace(memory.CPU, per_token=memory.CPU.per_token * 3,
                                                              source="fitted to 8 peaks on Test GPU 80GB"))
    measured = preflight.check(TrainConfig().to_dict())
    assert measured.estimate.factors.calibrated
    assert measured.estimate.per_token == pytest.approx(guessed.estimate.per_token * 3)
    assert "uncalibrated" not in client.get("/staff/runs/preview/", FORM_DEFAULTS).content.decode()


def test_a_run_too_big_for_the_workers_is_refused_with_the_numbers_and_a_change_that_fits(bundled_base, reports,
                                                                                          staff):
    reports("train-small@box", ram_gib=8)
    paper = TrainConfig().to_dict()
    fit = preflight.check(paper)
    assert not fit.fits and fit.estimate.peak > 0.9 * 8 * GIB
    assert fit.change and fit.change_estimate.peak <= 0.9 * 8 * GIB
    changed = memory.estimate_config(SMOL, dataclasses.replace(TrainConfig(), **fit.change))
    assert changed.peak == fit.change_estimate.peak
    with pytest.raises(services.RunDoesNotFit) as refused:
        services.run_create(created_by=staff, name="big", config=paper, data_filter={}, with_baseline=False)
    message = str(refused.value)
    assert re.search(r"needs about [\d.]+ GiB at its peak .* more than the 90% of 8 GiB", message)
    assert "Training with micro-batches of" in message and TrainingRun.objects.count() == 0


def test_a_model_that_fits_no_setting_is_refused_saying_so(bundled_base, reports, staff):
    reports("train-tiny@box", ram_gib=0.5)
    fit = preflight.check(TrainConfig().to_dict())
    assert not fit.fits and fit.change is None
    assert "No micro-batch, gradient checkpointing or precision makes it fit: the model alone needs" in fit.refusal()


def test_with_no_worker_reporting_nothing_is_refused(bundled_base, reports):
    assert preflight.check(TrainConfig().to_dict()).fits


def test_a_gpu_worker_gets_the_papers_defaults_and_a_cpu_worker_the_cpu_ones(bundled_base, reports):
    reports("train-cpu@box", ram_gib=24)
    assert preflight.form_defaults() == PRESETS["cpu"]
    assert preflight.form_defaults("paper") == {}
    reports("train-gpu@box", gpus=1, gpu_gib=80)
    assert preflight.form_defaults() == {}  # the form's own initial values are the paper's


def test_the_cpu_defaults_shrink_to_half_a_small_workers_memory(bundled_base, reports):
    reports("train-cpu@small", ram_gib=6)
    defaults = preflight.form_defaults()
    config = TrainConfig.from_dict(defaults)
    assert memory.estimate_config(SMOL, TrainConfig.from_dict(PRESETS["cpu"])).peak > 0.5 * 6 * GIB
    assert memory.estimate_config(SMOL, config).peak <= 0.5 * 6 * GIB
    assert config.micro_batch_size < PRESETS["cpu"]["micro_batch_size"] or config.gradient_checkpointing


def test_the_start_form_refuses_then_offers_the_change_in_one_click(client, staff, bundled_base, reports):
    from tests.training.test_run_services import FORM_DEFAULTS

    reports("train-cpu@box", ram_gib=24)
    client.force_login(staff)
    page = client.get("/staff/runs/new/").content.decode()
    assert 'name="micro_batch_size" value="2"' in page and "paper defaults" in page
    paper = {k: v for k, v in FORM_DEFAULTS.items() if not isinstance(v, bool)} | {"with_baseline": ""}
    refused = client.post("/staff/runs/new/", paper).content.decode()
    assert "more than the 90% of 24 GiB" in refused and TrainingRun.objects.count() == 0
    value = re.search(r'name="apply" value="([^"]+)"', refused).group(1)
    changed = client.post("/staff/runs/new/", {**paper, "apply": value}).content.decode()
    micro = int(re.search(r'name="micro_batch_size" value="(\d+)"', changed).group(1))
    assert micro < 8 and TrainingRun.objects.count() == 0
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', changed))
    start = {**paper, "micro_batch_size": micro}
    if 'name="gradient_checkpointing" checked' in changed or "gradient_checkpointing=on" in value:
        start["gradient_checkpointing"] = "on"
    response = client.post("/staff/runs/new/", start)
    assert response.status_code == 302, fields
    assert TrainingRun.objects.get().config["micro_batch_size"] == micro


def test_settings_that_never_fire_in_a_short_run_are_named():
    notes = preflight.schedule_notes({"checkpoint_every": 20, "diagnostics_every": 10, "warmup_steps": 150}, 6)
    assert notes == [
        "Checkpoint every 20 steps: this run has 6, so it writes no checkpoint before it ends (a killed run would "
        "start again from step 0). Try 1.",
        "Gradient entanglement every 10 steps never comes in 6 steps. Try 1.",
        "Warmup of 150 steps is cut to 0 (a tenth of the run).",
    ]
    assert preflight.schedule_notes({"checkpoint_every": 20, "diagnostics_every": 10, "warmup_steps": 5}, 200) == []


def test_the_preview_names_them_on_the_start_form(client, staff, reports):
    from tests.factories import population
    from tests.training.test_run_services import FORM_DEFAULTS

    population(people=4, conversations=2)
    client.force_login(staff)
    page = client.get("/staff/runs/preview/", {**FORM_DEFAULTS, "checkpoint_every": 50}).content.decode()
    assert 'id="schedule-notes"' in page and "Checkpoint every 50 steps: this run has" in page


def test_more_processes_than_any_worker_runs_are_refused_with_the_change(client, staff, bundled_base, reports):
    from tests.training.test_run_services import FORM_DEFAULTS

    reports("train-cpu@box", ram_gib=24)  # 2 CPU cores
    config = {**PRESETS["cpu"], "batch_size": 8, "micro_batch_size": 2}
    fit = preflight.check(config, processes=4)
    assert not fit.fits and fit.too_many_processes and fit.change == {"processes": 2}
    assert "asks for 4 processes, but the biggest train worker listening now runs at most 2" in fit.refusal()
    # On a CPU the processes share its memory: two of them need twice one's peak.
    two = preflight.check(config, processes=2)
    assert two.fits and two.need == 2 * two.estimate.peak
    with pytest.raises(services.RunDoesNotFit):
        services.run_create(created_by=staff, name="wide", config=config, data_filter={}, with_baseline=False,
                            processes=4)
    client.force_login(staff)
    form = {k: v for k, v in FORM_DEFAULTS.items() if not isinstance(v, bool)} | config | {"processes": 4}
    refused = client.post("/staff/runs/new/", form).content.decode()
    assert "runs at most 2" in refused and 'name="apply" value="processes=2"' in refused
    assert TrainingRun.objects.count() == 0


def test_a_batch_that_does_not_split_over_the_processes_is_refused_on_the_form(client, staff, reports):
    from tests.training.test_run_services import FORM_DEFAULTS

    client.force_login(staff)
    form = {k: v for k, v in FORM_DEFAULTS.items() if not isinstance(v, bool)}
    page = client.post("/staff/runs/new/", form | {"batch_size": 8, "micro_batch_size": 4, "processes": 3})
    assert "must split into 3 processes of whole micro-batches of 4" in page.content.decode()
    page = client.post("/staff/runs/new/", form | {"launch_config": "ds.yaml"})
    assert "absolute path of an accelerate config file" in page.content.decode()
    assert TrainingRun.objects.count() == 0


def test_the_form_writes_the_apply_buttons_change_into_its_data_and_nothing_else():
    from django.http import QueryDict

    from trainer.forms import RunForm

    button = RunForm.change_button({"micro_batch_size": 2, "gradient_checkpointing": True})
    assert button["value"] == "micro_batch_size=2,gradient_checkpointing=on"
    posted = QueryDict(f"micro_batch_size=8&lr_lora=0.001&apply={button['value']},is_staff=on")
    data = RunForm.data_with_change(posted)
    assert (data["micro_batch_size"], data["gradient_checkpointing"], data["lr_lora"]) == ("2", "on", "0.001")
    assert "apply" not in data and "is_staff" not in data and posted["micro_batch_size"] == "8"
