"""Scale on whatever device is here, in one call: training, memory, serving and refits on model shapes.

    python -m bench gpu [--budget-minutes 8] [--shapes llama-8b,qwen-1.5b,llama-1b] [--out DIR] [--fit-memory]
                        [--factors FILE]
    python -m bench gpu --fit-from gpu-DEVICE.json [--factors FILE]

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
  difference of the loss curve from one process's, judged against ``LOSS_TOLERANCE`` (``bench.gpu_rows``).

Each part runs in a child process with what is left of the budget and reports each row as it finishes; rows are
kept in ``--out`` at once (``gpu-DEVICE.json``), so a stopped run keeps its rows and the next measures only the
rest. A row that could not be measured says why. The table goes to ``gpu-DEVICE.md`` beside it.

``--fit-memory`` then fits the memory estimate's factors for this kind of device from the training rows;
``--fit-from FILE`` does the same from a table kept earlier, building and loading nothing (the shapes' sizes come
from their configs). The factors are kept under the device's name in ``--factors`` (default
``trainer/core/memory_factors.json``, where the start form reads them; on a lent machine, a file under the output
folder that comes back). A CPU's are printed, not kept: the estimate's CPU factors are ``memory.CPU``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.figures import Figure
from bench.gpu_rows import (BUDGET_OUT, COUNTS, LOSS_TOLERANCE, REFIT_PAIRS, SERVE_TOKENS, TRAIN_STEPS, device_info,
                            loss_verdict, model_shape, multi_ids, process_counts, serve_ids, shape_folder, slug,
                            train_rows)
from trainer.core import memory

PART_WEIGHTS = {"train": 0.5, "serve": 0.35, "processes": 0.15}  # how a shape's share of the budget is split



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



def train_ids(shape: str, on_gpu: bool) -> list[str]:
    """The training rows of a shape and its out-of-memory check."""
    return [r["id"] for r in train_rows(shape, on_gpu)] + [f"{shape}/oom"]


def shape_ids(shape: str, on_gpu: bool, processes: int) -> list[str]:
    """Every row of a shape: what a shape that cannot run at all marks with its reason."""
    return train_ids(shape, on_gpu) + serve_ids(shape) + multi_ids(shape, processes)


def unfinished(why: str | None) -> str:
    """What a row a measuring process never reported says: the budget, or the process's failure."""
    return BUDGET_OUT if why is None or why.startswith("killed") else why


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
    ap.add_argument("--fit-from", type=Path, metavar="FILE.json",
                    help="only fit the memory factors from a table bench gpu kept (gpu-DEVICE.json); measures nothing")
    ap.add_argument("--factors", type=Path, metavar="FILE",
                    help="where fitted factors are kept (default: trainer/core/memory_factors.json, which the start "
                         "form reads)")
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
        from bench import gpu_children

        {"train": gpu_children.child_train, "serve": gpu_children.child_serve,
         "processes": gpu_children.child_processes}[spec["part"]](spec)
        return []
    if args.fit_from:
        if not args.fit_from.is_file():
            raise SystemExit(f"No table at {args.fit_from}: pass a gpu-DEVICE.json python -m bench gpu kept.")
        kept = json.loads(args.fit_from.read_text())
        fit_memory(kept["device"], kept["rows"], args.factors, args.fit_from.name)
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
        params = model_shape(name).params
        if params * 4 * 1.1 > info["memory"]:
            for row_id in shape_ids(name, on_gpu, processes):
                store({"id": row_id, "not_measured": f"its fp32 weights alone ({params * 4 / 2**30:.0f} GiB) do not "
                                                     "fit this device"})
            continue
        plan.append((name, params))
    for i, (name, params) in enumerate(plan):
        share = params / sum(p for _, p in plan[i:])
        shape_deadline = time.time() + (deadline - time.time()) * share
        needed = {"train": train_ids(name, on_gpu), "serve": serve_ids(name),
                  "processes": multi_ids(name, processes) if processes >= 2 else []}
        parts = [part for part, ids in needed.items() if any(wanted(i) for i in ids)]  # a kept row costs nothing

        def part_deadline(part: str) -> float:
            """Now plus this part's weight of what is left of the shape's share (parts before it done)."""
            left = parts[parts.index(part):]
            return time.time() + (shape_deadline - time.time()) * PART_WEIGHTS[part] / sum(PART_WEIGHTS[p]
                                                                                             for p in left)
        build_started = time.time()
        try:
            folder = shape_folder(name, info["device"], args.tokenizer)
        except Exception as exc:  # noqa: BLE001 - every row of the shape says why
            for row_id in shape_ids(name, on_gpu, processes):
                store({"id": row_id, "not_measured": f"the shape could not be built: {exc}"})
            continue
        print(f"{name}: {folder} (ready in {time.time() - build_started:.0f} s)", flush=True)
        base = {"shape": name, "folder": folder, "device": info["device"], "kind": info["kind"],
                "memory": info["memory"], "max_length": args.max_length}
        todo = [r for r in train_rows(name, on_gpu) if wanted(r["id"])]
        if todo or wanted(f"{name}/oom"):
            train_deadline = part_deadline("train")
            # A GPU's peak is torch's own count, exact row by row in one process that loads the model once; a
            # CPU's is the resident high-water mark, which memory an earlier row freed but the allocator kept
            # would raise: there each row gets a fresh process.
            why = None
            for part in ([todo] if on_gpu else [[r] for r in todo] or [[]]):
                if time.time() >= train_deadline:
                    break
                why = run_child({**base, "part": "train", "rows": part}, train_deadline, store) or why
            for r in todo + [{"id": f"{name}/oom"}]:
                if r["id"] not in rows:
                    store({"id": r["id"], "not_measured": unfinished(why)})
        if any(wanted(r) for r in serve_ids(name)):
            work = args.out / "work"
            work.mkdir(exist_ok=True)
            why = run_child({**base, "part": "serve", "work": str(work), "vllm_python": args.vllm_python,
                             "vllm_args": args.vllm_args or ("--dtype bfloat16 --gpu-memory-utilization 0.85 "
                                                             "--max-model-len 2048" if on_gpu else CPU_ARGS),
                             "vllm_start_guess": 60 if on_gpu else 90}, part_deadline("serve"), store)
            for row_id in serve_ids(name):
                if row_id not in rows:
                    store({"id": row_id, "not_measured": unfinished(why)})
            shutil.rmtree(work, ignore_errors=True)
        if processes >= 2:
            if any(wanted(r) for r in multi_ids(name, processes)):
                from bench.gpu_children import run_processes

                for row in run_processes({**base, "micro": 1, "steps": TRAIN_STEPS}, process_counts(processes),
                                         part_deadline("processes")):
                    store(row)
        else:
            for row_id in multi_ids(name, processes):
                if wanted(row_id):  # a row measured before (with --processes) stays
                    store({"id": row_id, "not_measured": "one GPU or none here: several processes need several "
                                                         "GPUs (on a CPU, --processes N runs them over gloo)"})
    markdown = table(info, names, rows, on_gpu, args.max_length, processes)
    path.with_suffix(".md").write_text(markdown)
    print("\n" + markdown, flush=True)
    print(f"\n{path} and {path.with_suffix('.md')} written; {time.time() - started:.0f} s of the "
          f"{args.budget_minutes:g} min budget", flush=True)
    if args.fit_memory:
        fit_memory(info, rows, args.factors, path.name)
    measured = [r for r in rows.values() if "not_measured" not in r]
    within = [r for r in rows.values() if r.get("estimate") and r.get("peak")
              and 0.8 <= r["estimate"] / r["peak"] <= 1.2]
    estimated = [r for r in rows.values() if r.get("estimate") and r.get("peak")]
    judged = [loss_verdict(r) for r in rows.values() if "/processes/" in r["id"] and "speed_up" in r]
    return [Figure("gpu", f"rows measured on {info['describe']}", f"{len(measured)} of {len(rows)}"),
            Figure("gpu", "training peaks the estimate is within 20 % of", f"{len(within)} of {len(estimated)}",
                   "all", len(within) == len(estimated) if estimated else None),
            Figure("gpu", f"several-process loss curves within {LOSS_TOLERANCE:g} of one process's",
                   f"{judged.count(True)} of {len(judged)}", "all", all(judged) if judged else None)]



def fit_memory(info: dict, rows: dict, keep: Path | None = None, table_name: str = "") -> memory.Factors | None:
    """Fit the memory estimate's factors for ``info``'s kind of device to its training rows' peaks, say how near the
    fitted estimate comes to each, and keep them in ``keep`` (default: the file the estimate reads). The shapes'
    sizes come from their configs: nothing is built or loaded. Returns the factors, or None with too few rows."""
    used = [(model_shape(r.get("shape") or r["id"].split("/")[0]), r["estimate_kwargs"],
             {"before": r["before"], "peak": r["peak"]}) for r in rows.values()
            if "/train/" in r["id"] and "peak" in r and r.get("before") and r.get("estimate_kwargs")]
    if len(used) < 4:
        print(f"memory fit: {len(used)} training rows measured, at least 4 are needed; nothing kept", flush=True)
        return None
    factors = memory.fit_factors(used, source=f"fitted to {len(used)} peaks python -m bench gpu measured on "
                                              f"{info['kind']}" + (f" ({table_name})" if table_name else ""))
    ratios = [memory.estimate(shape, **kwargs, factors=factors).peak / m["peak"] for shape, kwargs, m in used]
    print(f"memory fit for {info['kind']}: {factors}\n  the fitted estimate is within 20 % of "
          f"{sum(0.8 <= r <= 1.2 for r in ratios)} of {len(used)} peaks (estimate / peak {min(ratios):.2f} to "
          f"{max(ratios):.2f})", flush=True)
    if info["kind"] == "cpu":
        print("  not kept: a CPU is estimated with memory.CPU (python -m bench memory --fit), never the file",
              flush=True)
        return factors
    path = keep or memory.FACTORS_FILE
    memory.save_factors(info["kind"], factors, path)
    print(f"  kept for {info['kind']} in {path}", flush=True)
    return factors



def gib(value) -> str:
    return f"{value / 2**30:.2f} GiB"


def loss_cell(row: dict) -> str:
    """The loss curve's agreement with one process's, with the tolerance and its verdict."""
    verdict = loss_verdict(row)
    if row.get("loss_difference") is None:
        return f"loss curves not compared: {row.get('loss_note', 'no losses logged')}"
    moved = f"; one process's curve moved {row['loss_moved']:.1e}" if "loss_moved" in row else ""
    return (f"loss curve within {row['loss_difference']:.1e} of one process's (tolerance {LOSS_TOLERANCE:g}: "
            f"{'met' if verdict else '**not met**'}{moved})")



def table(info: dict, names: list[str], rows: dict, on_gpu: bool, max_length: int | None = None,
          processes: int = 0) -> str:
    def why(r):
        reason = r.get("not_measured") or "no row (the run stopped before it)"
        return reason if reason.startswith("not measured") else f"not measured: {reason}"

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
        setting = (f"{r['setting'].split('/train/')[-1]}, micro-batch {r['micro_batch_size']}" if r.get("setting")
                   else "-")
        out.append(f"| {name} | {setting} | {outcome} |")
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
            value = (f"{r['pairs_per_second']:.2f} pairs/s, {r['speed_up']:.2f}x one process; {loss_cell(r)}"
                     if "speed_up" in r else why(r))
            out.append(f"| {name} | training over {row_id.rsplit('/', 1)[1]} processes | {value} |")
    return "\n".join(out) + "\n"



if __name__ == "__main__":  # the parent runs each part as `python -m bench.gpu --child SPEC`
    main()
