"""The measuring processes of ``python -m bench gpu``: training rows and the out-of-memory check, serving and
refits, a run over several processes. Each reports its rows on stdout as it finishes them (``emit``)."""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.gpu_rows import (BUDGET_OUT, COUNTS, LOSS_TOLERANCE, REFIT_PAIRS, SERVE_TOKENS, TRAIN_PEOPLE, Peak, emit,
                            train_config)
from bench.memory import worst_case_pairs


def largest_fitting_micro(shape, config, budget: float, kind: str) -> int | None:
    from trainer.core import memory

    micro = config.micro_batch_size // 2
    while micro >= 1:
        if memory.estimate_config(shape, dataclasses.replace(config, micro_batch_size=micro), kind).peak <= budget:
            return micro
        micro //= 2
    return None



def child_train(spec: dict) -> None:
    import trainer.core.loop as loop
    from trainer.core import memory
    from trainer.core.fit import FIT_SHARE, Fit

    device, kind, deadline = spec["device"], spec["kind"], spec["deadline"]
    shape = memory.shape_of(spec["folder"])
    cached, tokenizer = loop.load_base(spec["folder"])  # fp32 on the host, copied for each row
    held = sum(t.nbytes for t in cached.state_dict().values()) if device == "cpu" else 0
    loop.load_base = lambda _path: (copy.deepcopy(cached), tokenizer)
    peak = Peak(device, held)
    refused_first = None
    took = 0.0
    for row in spec["rows"]:
        if time.time() + took > deadline:
            emit({"id": row["id"], "not_measured": BUDGET_OUT})
            continue
        started = time.time()
        config = train_config(row, device, max_length=spec.get("max_length"))
        est = memory.estimate_config(shape, config, kind)
        result = {"id": row["id"], "micro_batch_size": config.micro_batch_size, "max_length": config.max_length}
        if est.peak > FIT_SHARE * spec["memory"]:
            result["refused"] = Fit(est, spec["memory"]).refusal()
            refused_first = refused_first or (row, config.micro_batch_size)
            micro = largest_fitting_micro(shape, config, FIT_SHARE * spec["memory"], kind)
            if micro is None:
                emit({**result, "not_measured": "the start form refuses it at every micro-batch"})
                continue
            config = train_config(row, device, micro, max_length=spec.get("max_length"))
            est = memory.estimate_config(shape, config, kind)
            result["micro_batch_size"] = micro
        try:
            result.update(measure_training(config, spec["folder"], peak))
            result["estimate"] = est.peak
        except Exception as exc:  # noqa: BLE001 - the row says what went wrong, the others go on
            result["not_measured"] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
        emit(result)
        took = time.time() - started
    emit(oom_check(spec, refused_first, peak, took))



def measure_training(config, folder: str, peak: Peak) -> dict:
    import torch

    import trainer.core.loop as loop
    from trainer.core import memory

    pairs = worst_case_pairs(config.batch_size * config.max_steps, TRAIN_PEOPLE)
    stamps, seen = [], {}

    def on_phase(phase, done, total):
        if phase == "training" and "before" not in seen:
            seen["before"] = peak.now()

    peak.start()
    run = loop.train(config, folder, pairs, log=lambda *_: None, on_phase=on_phase,
                     progress=lambda step, total, metrics: stamps.append((time.perf_counter(), metrics)))
    measured = peak.read()
    losses = [m["loss"] for _, m in stamps if m and "loss" in m]
    del run
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    step_seconds = (stamps[-1][0] - stamps[0][0]) / (len(stamps) - 1)
    return {"pairs_per_second": config.batch_size / step_seconds, "step_seconds": step_seconds,
            "peak": measured, "before": seen.get("before", 0), "losses": losses,
            "estimate_kwargs": memory.config_kwargs(config, "cuda" if torch.cuda.is_available() else "cpu")}



def oom_check(spec: dict, refused, peak: Peak, took: float) -> dict:
    import torch

    row_id = f"{spec['shape']}/oom"
    if refused is None:
        return {"id": row_id, "not_measured": "the start form refuses none of these settings on this device"}
    if spec["device"] != "cuda":
        return {"id": row_id, "not_measured": "not run on a CPU: an out-of-memory there takes the machine, not one "
                                              "process"}
    if time.time() + took > spec["deadline"]:
        return {"id": row_id, "not_measured": BUDGET_OUT}
    row, micro = refused
    config = train_config(row, spec["device"], micro, steps=1, max_length=spec.get("max_length"))
    result = {"id": row_id, "setting": row["id"], "micro_batch_size": micro}
    try:
        result.update(measure_training(config, spec["folder"], peak))
        result["outcome"] = "ran: the refusal was too cautious"
    except torch.OutOfMemoryError:
        result["outcome"] = "out of memory, as the start form said"
    gc.collect()
    torch.cuda.empty_cache()
    return result



def child_serve(spec: dict) -> None:
    import torch

    import bench.vllm_serving as vs
    import trainer.core.batch_generation as batch_generation
    from trainer.core.artifacts import input_embedding, load_run, save_run, write_merged
    from trainer.core.batch_generation import BatchScheduler
    from trainer.core.config import FastFitConfig, TrainConfig
    from trainer.core.fastfit import fast_fit
    from trainer.core.loop import build_model, load_base
    from trainer.core.usermodel import UserIndex
    from users.synthetic.pairs import make_pairs
    from users.synthetic.personas import sample_population
    from users.synthetic.prompts import DEFAULT_PROMPTS

    shape, device, deadline = spec["shape"], spec["device"], spec["deadline"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-gpu-", dir=spec["work"]))
    users = [f"person{i + 1}" for i in range(max(COUNTS))]
    config = TrainConfig(seed=0)
    lm, tokenizer = load_base(spec["folder"])
    save_run(tmp / "run", build_model(lm, tokenizer, config, n_users=len(users)), UserIndex(users), config,
             base_model=spec["folder"])
    del lm
    started = time.perf_counter()
    merged = write_merged(tmp / "run", spec["folder"])
    emit({"id": f"{shape}/merged", "seconds": time.perf_counter() - started,
          "bytes": sum(f.stat().st_size for f in merged.iterdir() if f.is_file())})

    batch_generation._eos_ids = lambda model, tokenizer: set()  # exactly SERVE_TOKENS tokens, like ignore_eos
    served = load_run(tmp / "run", merge=True, device=device)
    softs = [served.soft_prompt(u) for u in users]
    hf = BatchScheduler(served.model.lm, served.tokenizer, max_batch=max(COUNTS), max_wait=0.05)
    vs.timed(hf, softs[:1], 4)  # warm-up
    for n in COUNTS:
        emit(serve_row(f"{shape}/serve/hf/{n}", lambda n=n, hf=hf: vs.timed(hf, softs[:n], SERVE_TOKENS), deadline))
    hf.close()
    del served, hf
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()

    fitting = load_run(tmp / "run", device=device)  # unmerged: the refit turns the adapter off for its reference
    peak = Peak(device)
    person = sample_population(1, seed=3, prefix="new")
    pairs = make_pairs(person, DEFAULT_PROMPTS, conversations_per_user=max(REFIT_PAIRS) + 4, seed=4,
                       system="You are a helpful assistant.", detailed_sentences=(2, 2))
    for n in REFIT_PAIRS:
        row_id = f"{shape}/refit/{n}"
        if time.time() > deadline:
            emit({"id": row_id, "not_measured": BUDGET_OUT})
            continue
        newcomer = f"newcomer{n}"
        peak.start()
        started = time.perf_counter()
        report = fast_fit(fitting.model, fitting.tokenizer, fitting.user_index, fitting.config, newcomer,
                          [dataclasses.replace(p, user_id=newcomer) for p in pairs[:n]], fit=FastFitConfig(),
                          device=device)
        emit({"id": row_id, "seconds": time.perf_counter() - started, "peak": peak.read(), "pairs": report.pairs,
              "passes": report.passes})
    del fitting
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()

    python = spec["vllm_python"]
    if not python or not Path(python).is_file():
        for n in COUNTS:
            emit({"id": f"{shape}/serve/vllm/{n}", "not_measured": f"no vLLM environment here ({python or 'unset'}; "
                  "set VLLM_PYTHON or pass --vllm-python)"})
        return
    if time.time() + spec["vllm_start_guess"] > deadline:
        for n in COUNTS:
            emit({"id": f"{shape}/serve/vllm/{n}", "not_measured": BUDGET_OUT})
        return
    log = tmp / "vllm.log"
    try:
        proc, url, start_seconds = vs.start_server(python, merged, spec["vllm_args"], log)
    except SystemExit as exc:
        for n in COUNTS:
            emit({"id": f"{shape}/serve/vllm/{n}", "not_measured": f"the vLLM server did not start: {str(exc)[-300:]}"})
        return
    try:
        engine = vs.VLLMEngine(lambda _name: url, "bench", tokenizer, input_embedding(merged),
                               extra={"ignore_eos": True})
        vs.timed(engine, softs[:1], 4)  # warm-up
        for n in COUNTS:
            row = serve_row(f"{shape}/serve/vllm/{n}", lambda n=n: vs.timed(engine, softs[:n], SERVE_TOKENS), deadline)
            emit({**row, "server_start_seconds": start_seconds})
    finally:
        vs.stop_server(proc)



def serve_row(row_id: str, measure, deadline: float) -> dict:
    if time.time() > deadline:
        return {"id": row_id, "not_measured": BUDGET_OUT}
    try:
        rate, first = measure()
    except Exception as exc:  # noqa: BLE001 - the row says what went wrong
        return {"id": row_id, "not_measured": f"failed: {type(exc).__name__}: {str(exc)[:300]}"}
    return {"id": row_id, "tokens_per_second": rate, "first_token_median": statistics.median(first),
            "first_token_max": max(first)}



def child_processes(spec: dict) -> None:
    """One rank of a run over WORLD_SIZE processes (torchrun starts them); rank 0 reports."""
    import torch.distributed as dist

    import trainer.core.loop as loop

    row = {"loss": "P-DPO", "bf16": spec["device"] == "cuda", "checkpointing": True}
    config = train_config(row, spec["device"], micro=spec["micro"], steps=spec["steps"],
                          max_length=spec.get("max_length"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # No LoRA dropout (the paper's settings have 0.05): each layout would draw its own masks and the loss curves
    # could not agree however right the run over several processes is.
    config = dataclasses.replace(config, batch_size=config.micro_batch_size * 2 * spec["world_max"], lora_dropout=0.0)
    pairs = worst_case_pairs(config.batch_size * config.max_steps, TRAIN_PEOPLE)
    stamps = []
    loop.train(config, spec["folder"], pairs, log=lambda *_: None,
               progress=lambda step, total, metrics: stamps.append((time.perf_counter(), metrics)))
    if not dist.is_initialized() or dist.get_rank() == 0:
        seconds = (stamps[-1][0] - stamps[0][0]) / (len(stamps) - 1)
        print("RESULT " + json.dumps({"world": world, "pairs_per_second": config.batch_size / seconds,
                                      "losses": [m["loss"] for _, m in stamps if m and "loss" in m]}), flush=True)



def run_processes(spec: dict, counts: list[int], deadline: float) -> list[dict]:
    """The same run over 1 process and each of ``counts``; rows with speed-up and loss difference."""
    results = {}
    rows = []
    for world in [1, *counts]:
        left = deadline - time.time()
        if left < 30:
            break
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}", "-m",
               "bench.gpu", "--child", json.dumps({**spec, "part": "processes", "world_max": max(counts)})]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # its own group: a timeout stops every rank with it
        try:
            stdout, stderr = proc.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            break
        found = [json.loads(line[7:]) for line in stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not found:
            rows += [{"id": f"{spec['shape']}/processes/{n}",
                      "not_measured": f"failed with {world} processes: {stderr[-300:]}"} for n in counts]
            return rows
        results[world] = found[0]
    one = results.get(1)
    for n in counts:
        row_id = f"{spec['shape']}/processes/{n}"
        if one is None or n not in results:
            rows.append({"id": row_id, "not_measured": BUDGET_OUT})
            continue
        rows.append({"id": row_id, "pairs_per_second": results[n]["pairs_per_second"],
                     "speed_up": results[n]["pairs_per_second"] / one["pairs_per_second"],
                     **loss_agreement(one["losses"], results[n]["losses"])})
    return rows


def loss_agreement(one: list[float], several: list[float]) -> dict:
    """How far the loss curve over several processes stands from one process's, judged against LOSS_TOLERANCE;
    ``loss_moved`` is how far one process's own curve moved, so a reader sees what the agreement could detect."""
    if not one or len(one) != len(several):
        return {"loss_difference": None, "loss_within_tolerance": False,
                "loss_note": f"the curves have {len(one)} and {len(several)} logged steps"}
    difference = max(abs(a - b) for a, b in zip(one, several))
    return {"loss_difference": difference, "loss_tolerance": LOSS_TOLERANCE,
            "loss_within_tolerance": difference <= LOSS_TOLERANCE, "loss_moved": max(abs(a - one[0]) for a in one)}

