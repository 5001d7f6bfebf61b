"""Scale on whatever device is here, in one call: training, memory, serving and refits on model shapes.

    python -m bench gpu [--budget-minutes 8] [--shapes llama-8b,qwen-1.5b,llama-1b] [--out DIR] [--fit-memory]

Shapes are random-weight models of published architectures (``python -m bench shapes``; ``bundled`` is the bundled
SmolLM2); their figures are speed and memory only. Largest first, each shape whose fp32 weights fit the device gets
a share of the budget by its size, and within it:

- **training**: pairs per second and peak memory of P-DPO and plain DPO at the start form's defaults for this device
  (the paper's on a GPU, the CPU preset's on a CPU), with and without bf16 and gradient checkpointing, every sequence
  at its longest; each step's batch is cut to two micro-batches (pairs per second does not depend on the
  accumulation). The pre-flight estimate stands beside each peak (target within 20 %). A setting the start form
  refuses is shown with its words and measured at the largest micro-batch that fits; the first refused setting
  also runs one micro-batch on a GPU, to see the out-of-memory the refusal avoided.
- **serving**: aggregate tokens per second and time to first token at 1, 8, 32 and 128 people with their own
  vectors, the transformers path against vLLM (where a vLLM environment is here) on the same prompts; the time to
  write the merged folder vLLM serves.
- **refit** of a newcomer's vectors from 10 and 20 pairs: seconds and peak memory.
- **several processes** (more than one GPU): the same training over 2 and N processes, speed-up, and the largest
  difference of the loss curve from one process's.

Each part runs in a child process with what is left of the budget and reports each row as it finishes; rows are
kept in ``--out`` at once (``gpu-DEVICE.json``), so a stopped run keeps its rows and the next measures only the
rest. A row that could not be measured says why. The table goes to ``gpu-DEVICE.md`` beside it.
``--fit-memory`` then fits the memory estimate's factors for this kind of device from the training rows and keeps
them in ``trainer/core/memory_factors.json``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.figures import Figure, default_model

COUNTS = (1, 8, 32, 128)  # people served at once
REFIT_PAIRS = (10, 20)
TRAIN_STEPS = 3  # the first is a warm-up; pairs per second from the others
TRAIN_PEOPLE = 40
SERVE_TOKENS = 64
BUDGET_OUT = "not measured: the budget ran out"
BUNDLED_VOCAB = 49152  # the bundled tokenizer's, which every shape uses
BUNDLED_PARAMS = 134_515_008
PART_WEIGHTS = {"train": 0.5, "serve": 0.35, "processes": 0.15}  # how a shape's share of the budget is split


# --- the rows ---------------------------------------------------------------------------------------------------

def train_rows(shape: str, on_gpu: bool) -> list[dict]:
    """The training settings measured for a shape, most telling first (the form's own default first)."""
    rows = []
    for loss in ("P-DPO", "DPO"):
        for bf16 in ((True, False) if on_gpu else (False, True)):
            for checkpointing in (False, True):
                rows.append({"id": f"{shape}/train/{loss}/{'bf16' if bf16 else 'fp32'}/"
                                   f"{'checkpointing' if checkpointing else 'plain'}",
                             "loss": loss, "bf16": bf16, "checkpointing": checkpointing})
    return rows


def serve_ids(shape: str) -> list[str]:
    return ([f"{shape}/merged"] + [f"{shape}/serve/{engine}/{n}" for engine in ("hf", "vllm") for n in COUNTS]
            + [f"{shape}/refit/{n}" for n in REFIT_PAIRS])


def process_counts(processes: int) -> list[int]:
    """The numbers of processes measured against one: 2 and all there are."""
    return sorted({2, processes}) if processes >= 2 else [2]


def multi_ids(shape: str, processes: int) -> list[str]:
    return [f"{shape}/processes/{n}" for n in process_counts(processes)]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


# --- the device ---------------------------------------------------------------------------------------------------

def device_info() -> dict:
    import torch

    from trainer.core.hardware import describe_device

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {"device": "cuda", "kind": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(),
                "memory": props.total_memory, "describe": describe_device("cuda")}
    total = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    return {"device": "cpu", "kind": "cpu", "gpus": 0, "memory": total, "describe": describe_device("cpu")}


def shape_folder(name: str, device: str, tokenizer: str | None = None) -> str:
    from bench import shapes

    if name == "bundled":
        return default_model()
    return str(shapes.build(name, device="cuda" if device == "cuda" else "cpu", tokenizer_source=tokenizer))


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class Peak:
    """The peak memory of what runs between ``start()`` and ``read()``: torch's allocations on a GPU, the
    resident-set high-water mark on a CPU (less ``held``, bytes this benchmark keeps that a run would not)."""

    def __init__(self, device: str, held: int = 0):
        self.device, self.held = device, held

    def now(self) -> int:
        import torch

        return torch.cuda.memory_allocated() if self.device == "cuda" else _status("VmRSS") - self.held

    def start(self) -> None:
        import torch

        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from now

    def read(self) -> int:
        import torch

        if self.device == "cuda":
            return torch.cuda.max_memory_allocated()
        return _status("VmHWM") - self.held


def emit(row: dict) -> None:
    print("ROW " + json.dumps(row), flush=True)


# --- training --------------------------------------------------------------------------------------------------

def worst_case_pairs(n: int, people: int):
    """Pairs whose prompt and replies are each cut at their limits: every sequence at its longest."""
    from trainer.core.data import Pair

    words = " ".join(["river", "bread", "market", "window", "garden", "signal"] * 600)
    return [Pair(f"person{i % people}", [{"role": "user", "content": words}],
                 [{"role": "assistant", "content": "yes " + words}], [{"role": "assistant", "content": "no " + words}],
                 conversation_id=f"c{i}") for i in range(n)]


def train_config(row: dict, device: str, micro: int | None = None, steps: int = TRAIN_STEPS,
                 max_length: int | None = None):
    """The start form's defaults for ``device`` with ``row``'s loss, precision and checkpointing; ``max_length``
    (a quick check's) replaces the form's lengths, the prompt keeping the form's share of them."""
    from trainer.core.config import PLAIN_DPO, TrainConfig
    from trainer.core.presets import preset_values

    values = preset_values("paper" if device == "cuda" else "cpu")
    if max_length:
        form = TrainConfig.from_dict(values)
        values.update(max_length=max_length, max_prompt_length=max_length * form.max_prompt_length // form.max_length)
    config = TrainConfig.from_dict(values)
    micro = micro or config.micro_batch_size
    extra = PLAIN_DPO if row["loss"] == "DPO" else {}
    return TrainConfig.from_dict({**config.to_dict(), **extra, "micro_batch_size": micro, "batch_size": 2 * micro,
                                  "max_steps": steps, "warmup_steps": 0, "log_every": 1, "checkpoint_every": 0,
                                  "diagnostics_every": 0, "bf16": row["bf16"],
                                  "gradient_checkpointing": row["checkpointing"]})


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


# --- serving and refits -------------------------------------------------------------------------------------------

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


# --- several processes ------------------------------------------------------------------------------------------

def child_processes(spec: dict) -> None:
    """One rank of a run over WORLD_SIZE processes (torchrun starts them); rank 0 reports."""
    import torch.distributed as dist

    import trainer.core.loop as loop

    row = {"loss": "P-DPO", "bf16": spec["device"] == "cuda", "checkpointing": True}
    config = train_config(row, spec["device"], micro=spec["micro"], steps=spec["steps"],
                          max_length=spec.get("max_length"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    config = dataclasses.replace(config, batch_size=config.micro_batch_size * 2 * spec["world_max"])
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
        difference = max(abs(a - b) for a, b in zip(one["losses"], results[n]["losses"]))
        rows.append({"id": row_id, "pairs_per_second": results[n]["pairs_per_second"],
                     "speed_up": results[n]["pairs_per_second"] / one["pairs_per_second"],
                     "loss_difference": difference})
    return rows


# --- the parent -------------------------------------------------------------------------------------------------

def run_child(spec: dict, deadline: float, store) -> str | None:
    """Run one part in a child process until ``deadline`` (and a grace of 20 s), keeping each row it reports;
    returns why it ended early, or None."""
    cmd = [sys.executable, "-m", "bench.gpu", "--child", json.dumps({**spec, "deadline": deadline})]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    stderr_tail: list[str] = []

    def read_err():
        for line in proc.stderr:
            stderr_tail.append(line)
            del stderr_tail[:-40]

    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    timer = threading.Timer(max(1.0, deadline + 20 - time.time()), lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        for line in proc.stdout:
            if line.startswith("ROW "):
                store(json.loads(line[4:]))
            else:
                print("  " + line.rstrip(), flush=True)
    finally:
        timer.cancel()
        proc.wait()
        reader.join(timeout=5)
    if proc.returncode:
        why = "killed at the end of the budget" if proc.returncode == -signal.SIGKILL else \
            f"the measuring process failed (exit {proc.returncode}): {''.join(stderr_tail)[-400:]}"
        print(f"  {spec['part']} of {spec['shape']}: {why}", flush=True)
        return why
    return None


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-minutes", type=float, default=8.0)
    ap.add_argument("--shapes", help="comma-separated, largest first (default: llama-8b,qwen-1.5b,llama-1b on a GPU, "
                                     "llama-tiny,qwen-tiny on a CPU; bundled = the bundled SmolLM2)")
    ap.add_argument("--out", type=Path, default=Path("bench-results/gpu"))
    ap.add_argument("--vllm-python", default=os.environ.get("VLLM_PYTHON", ".venv-vllm/bin/python"))
    ap.add_argument("--vllm-args", default=os.environ.get("VLLM_ARGS"),
                    help="vLLM server arguments (default: bf16 and 85 %% of the GPU; the CPU's from bench vllm_serving)")
    ap.add_argument("--fit-memory", action="store_true",
                    help="fit the memory estimate's factors for this device from the training rows and keep them")
    ap.add_argument("--fresh", action="store_true", help="measure every row again")
    ap.add_argument("--tokenizer", help="the bundled tokenizer's folder, for building shapes on a machine without the "
                                        "bundled model (python -m bench shapes --export-tokenizer DIR makes one)")
    ap.add_argument("--processes", type=int, help="processes for the several-process rows (default: the GPUs; on a "
                                                  "CPU, N processes of one core each over gloo)")
    ap.add_argument("--max-length", type=int, help="tokens per sequence instead of the start form's (a quick "
                                                   "check; the table says so)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        {"train": child_train, "serve": child_serve, "processes": child_processes}[spec["part"]](spec)
        return []

    from bench import shapes as shape_builds
    from bench.vllm_serving import CPU_ARGS

    info = device_info()
    on_gpu = info["device"] == "cuda"
    names = args.shapes.split(",") if args.shapes else list(shape_builds.LARGE if on_gpu else shape_builds.SMALLEST)
    processes = args.processes if args.processes is not None else info["gpus"]
    started = time.time()
    deadline = started + args.budget_minutes * 60
    args.out.mkdir(parents=True, exist_ok=True)
    length = f"-{args.max_length}-tokens" if args.max_length else ""  # a quick check's rows are kept apart
    path = args.out / f"gpu-{slug(info['kind'] if on_gpu else info['describe'])}{length}.json"
    kept = json.loads(path.read_text()) if path.is_file() and not args.fresh else {"device": info, "rows": {}}
    rows: dict[str, dict] = kept["rows"]

    def store(row: dict) -> None:
        rows[row["id"]] = {**row, "shape": row["id"].split("/")[0]}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"device": info, "rows": rows}, indent=1))
        tmp.replace(path)

    def wanted(row_id: str) -> bool:
        return row_id not in rows or rows[row_id].get("not_measured", "").startswith(BUDGET_OUT)

    print(f"{info['describe']}; {info['memory'] / 2**30:.0f} GiB; budget {args.budget_minutes:g} min; shapes "
          f"{', '.join(names)}", flush=True)
    plan = []
    for name in names:
        if name != "bundled" and name not in shape_builds.available():
            raise SystemExit(f"No shape called {name!r}: choose from bundled, {', '.join(shape_builds.available())}.")
        params = shape_builds.params_of(name, BUNDLED_VOCAB) if name != "bundled" else BUNDLED_PARAMS
        if params * 4 * 1.1 > info["memory"]:
            for row_id in [r["id"] for r in train_rows(name, on_gpu)] + [f"{name}/oom"] + serve_ids(name):
                store({"id": row_id, "not_measured": f"its fp32 weights alone ({params * 4 / 2**30:.0f} GiB) do not "
                                                     "fit this device"})
            continue
        plan.append((name, params))
    for i, (name, params) in enumerate(plan):
        share = params / sum(p for _, p in plan[i:])
        shape_deadline = time.time() + (deadline - time.time()) * share
        parts = ["train", "serve", *(["processes"] if processes >= 2 else [])]

        def part_deadline(part: str) -> float:
            """Now plus this part's weight of what is left of the shape's share (parts before it done)."""
            left = parts[parts.index(part):]
            return time.time() + (shape_deadline - time.time()) * PART_WEIGHTS[part] / sum(PART_WEIGHTS[p]
                                                                                             for p in left)
        build_started = time.time()
        try:
            folder = shape_folder(name, info["device"], args.tokenizer)
        except Exception as exc:  # noqa: BLE001 - every row of the shape says why
            for row_id in [r["id"] for r in train_rows(name, on_gpu)] + [f"{name}/oom"] + serve_ids(name):
                store({"id": row_id, "not_measured": f"the shape could not be built: {exc}"})
            continue
        print(f"{name}: {folder} (ready in {time.time() - build_started:.0f} s)", flush=True)
        base = {"shape": name, "folder": folder, "device": info["device"], "kind": info["kind"],
                "memory": info["memory"], "max_length": args.max_length}
        todo = [r for r in train_rows(name, on_gpu) if wanted(r["id"])]
        if todo or wanted(f"{name}/oom"):
            why = run_child({**base, "part": "train", "rows": todo}, part_deadline("train"), store)
            for r in todo + [{"id": f"{name}/oom"}]:
                if r["id"] not in rows:
                    store({"id": r["id"], "not_measured": BUDGET_OUT if why is None or why.startswith("killed")
                           else why})
        if any(wanted(r) for r in serve_ids(name)):
            work = args.out / "work"
            work.mkdir(exist_ok=True)
            why = run_child({**base, "part": "serve", "work": str(work), "vllm_python": args.vllm_python,
                             "vllm_args": args.vllm_args or ("--dtype bfloat16 --gpu-memory-utilization 0.85 "
                                                             "--max-model-len 2048" if on_gpu else CPU_ARGS),
                             "vllm_start_guess": 60 if on_gpu else 90}, part_deadline("serve"), store)
            for row_id in serve_ids(name):
                if row_id not in rows:
                    store({"id": row_id, "not_measured": BUDGET_OUT if why is None or why.startswith("killed")
                           else why})
            shutil.rmtree(work, ignore_errors=True)
        if processes >= 2:
            if any(wanted(r) for r in multi_ids(name, processes)):
                for row in run_processes({**base, "micro": 1, "steps": TRAIN_STEPS}, process_counts(processes),
                                         part_deadline("processes")):
                    store(row)
        else:
            for row_id in multi_ids(name, processes):
                store({"id": row_id, "not_measured": "one GPU or none here: several processes need several GPUs "
                                                     "(on a CPU, --processes N runs them over gloo)"})
    markdown = table(info, names, rows, on_gpu, args.max_length, processes)
    path.with_suffix(".md").write_text(markdown)
    print("\n" + markdown, flush=True)
    print(f"\n{path} and {path.with_suffix('.md')} written; {time.time() - started:.0f} s of the "
          f"{args.budget_minutes:g} min budget", flush=True)
    if args.fit_memory:
        fit_memory(info, rows)
    measured = [r for r in rows.values() if "not_measured" not in r]
    within = [r for r in rows.values() if r.get("estimate") and r.get("peak")
              and 0.8 <= r["estimate"] / r["peak"] <= 1.2]
    estimated = [r for r in rows.values() if r.get("estimate") and r.get("peak")]
    return [Figure("gpu", f"rows measured on {info['describe']}", f"{len(measured)} of {len(rows)}"),
            Figure("gpu", "training peaks the estimate is within 20 % of", f"{len(within)} of {len(estimated)}",
                   "all", len(within) == len(estimated) if estimated else None)]


def fit_memory(info: dict, rows: dict) -> None:
    from trainer.core import memory

    used = [(memory.shape_of(shape_folder(r["shape"], info["device"])), r["estimate_kwargs"],
             {"before": r["before"], "peak": r["peak"]}) for r in rows.values()
            if "/train/" in r["id"] and "peak" in r and r.get("before")]
    if len(used) < 4:
        print(f"--fit-memory: {len(used)} training rows measured, at least 4 are needed; nothing kept", flush=True)
        return
    factors = memory.fit_factors(used, source=f"fitted to {len(used)} peaks python -m bench gpu measured on "
                                              f"{info['kind']}")
    memory.save_factors(info["kind"], factors)
    print(f"memory factors for {info['kind']} kept in {memory.FACTORS_FILE}: {factors}", flush=True)


# --- the table --------------------------------------------------------------------------------------------------

def gib(value) -> str:
    return f"{value / 2**30:.2f} GiB"


def table(info: dict, names: list[str], rows: dict, on_gpu: bool, max_length: int | None = None,
          processes: int = 0) -> str:
    def why(r):
        return r.get("not_measured") or "not measured: no row (the run stopped before it)"

    length_note = f", {max_length} tokens instead of the start form's lengths" if max_length else ""

    out = [f"Device: {info['describe']}, {info['memory'] / 2**30:.0f} GiB. Shapes have random weights: speed and "
           "memory only.", "", f"**Training** (every sequence at its longest{length_note}; batches of two "
           "micro-batches)", "",
           "| shape | loss | precision | checkpointing | micro-batch | pairs/s | peak | estimate | estimate / peak | "
           "the start form |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        for spec in train_rows(name, on_gpu):
            r = rows.get(spec["id"], {})
            form = ("refuses the form's micro-batch: " + r["refused"]) if r.get("refused") else "accepts it"
            head = (f"| {name} | {spec['loss']} | {'bf16' if spec['bf16'] else 'fp32'} | "
                    f"{'yes' if spec['checkpointing'] else 'no'} | ")
            if "pairs_per_second" in r:
                out.append(head + f"{r['micro_batch_size']} | {r['pairs_per_second']:.2f} | {gib(r['peak'])} | "
                           f"{gib(r['estimate'])} | {r['estimate'] / r['peak']:.2f} | {form} |")
            else:
                out.append(head + f"{r.get('micro_batch_size', '')} | {why(r)} | | | | {form if r else ''} |")
    out += ["", "**Out of memory where the start form refuses**", "", "| shape | setting | outcome |", "|---|---|---|"]
    for name in names:
        r = rows.get(f"{name}/oom", {})
        outcome = r.get("outcome") or why(r)
        if "peak" in r:
            outcome += f" ({gib(r['peak'])} at its peak)"
        out.append(f"| {name} | {r.get('setting', '').split('/train/')[-1]} micro-batch {r.get('micro_batch_size', '')} "
                   f"| {outcome} |")
    out += ["", f"**Serving** ({SERVE_TOKENS} tokens a reply, greedy; each person with their own vectors)", "",
            "| shape | people | transformers tokens/s | first token (median, max) | vLLM tokens/s | "
            "first token (median, max) | vLLM / transformers |", "|---|---|---|---|---|---|---|"]
    for name in names:
        for n in COUNTS:
            h, v = rows.get(f"{name}/serve/hf/{n}", {}), rows.get(f"{name}/serve/vllm/{n}", {})

            def cells(r):
                if "tokens_per_second" not in r:
                    return [why(r), ""]
                return [f"{r['tokens_per_second']:.1f}", f"{r['first_token_median']:.2f} s, {r['first_token_max']:.2f} s"]
            ratio = (f"{v['tokens_per_second'] / h['tokens_per_second']:.2f}x"
                     if "tokens_per_second" in v and "tokens_per_second" in h else "")
            out.append(f"| {name} | {n} | " + " | ".join(cells(h) + cells(v)) + f" | {ratio} |")
    out += ["", "**The merged folder, refits and several processes**", "", "| shape | measurement | value |",
            "|---|---|---|"]
    for name in names:
        r = rows.get(f"{name}/merged", {})
        value = f"{r['seconds']:.1f} s, {gib(r['bytes'])}" if "seconds" in r else why(r)
        out.append(f"| {name} | merged folder written | {value} |")
        for n in REFIT_PAIRS:
            r = rows.get(f"{name}/refit/{n}", {})
            value = f"{r['seconds']:.1f} s, {gib(r['peak'])} at its peak" if "seconds" in r else why(r)
            out.append(f"| {name} | a newcomer's refit from {n} pairs | {value} |")
        for row_id in multi_ids(name, processes):
            r = rows.get(row_id, {})
            value = (f"{r['pairs_per_second']:.2f} pairs/s, {r['speed_up']:.2f}x one process, loss curve within "
                     f"{r['loss_difference']:.1e}" if "speed_up" in r else why(r))
            out.append(f"| {name} | training over {row_id.rsplit('/', 1)[1]} processes | {value} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # the parent runs each part as `python -m bench.gpu --child SPEC`
    main()
