"""Serving on vLLM against our transformers path: the same people, prompts and vectors, in one run.

    python -m bench vllm_serving [--model PATH] [--tokens 64] [--people 1,8,32] [--vllm-args "..."]

A version of the model (a seeded LoRA and user model; speed does not depend on their values) is saved, its
merged folder written, and N people with different vectors each ask one prompt at once:

- **HF**: the generate worker's path (``BatchScheduler`` on the merged model, the soft prompt placed in the
  batch; batches of up to N requests);
- **vLLM**: a vLLM server (vLLM's own environment, ``VLLM_PYTHON``, default ``.venv-vllm``) serving the merged
  folder, each request carrying its prompt embeddings (``trainer.core.vllm.VLLMEngine``, the worker's client).

Aggregate tokens/s (all people's tokens over the wall time until the last reply ends) and time to first token
(from submission to the first text) for each N. Every reply is exactly ``--tokens`` tokens on both sides
(EOS ignored), greedy. Also reported: the server's start time and memory.
"""

from __future__ import annotations

import argparse
import os
import shlex
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
from trainer.core.artifacts import input_embedding, load_run, save_run, write_merged
from trainer.core.batch_generation import BatchScheduler, GenerationRequest
from trainer.core.config import TrainConfig
from trainer.core.hardware import describe_device
from trainer.core.loop import build_model, load_base
from trainer.core.usermodel import UserIndex
from trainer.core.ports import free_port
from trainer.core.vllm import VLLMEngine, healthy, server_command
from users.synthetic.prompts import DEFAULT_PROMPTS

CPU_ARGS = "--dtype float32 --enforce-eager --kv-cache-memory-bytes 1073741824 --max-model-len 2048"


def timed(engine, softs: list, tokens: int) -> tuple[float, list[float]]:
    """(aggregate tokens/s, each request's seconds to its first text) for len(softs) concurrent people."""
    requests = [GenerationRequest([{"role": "user", "content": DEFAULT_PROMPTS[i % len(DEFAULT_PROMPTS)]}], soft,
                                  max_new_tokens=tokens, temperature=0.0) for i, soft in enumerate(softs)]
    first: list[float | None] = [None] * len(requests)

    def read(i: int, request: GenerationRequest) -> None:
        for _ in request.stream(timeout=900):
            if first[i] is None:
                first[i] = time.perf_counter()

    start = time.perf_counter()
    readers = []
    for i, request in enumerate(requests):
        engine.submit(request)
        readers.append(threading.Thread(target=read, args=(i, request)))
        readers[-1].start()
    for reader in readers:
        reader.join()
    seconds = time.perf_counter() - start
    counts = [r.tokens for r in requests]
    assert all(c == tokens for c in counts), f"replies of {sorted(set(counts))} tokens, not {tokens}"
    return sum(counts) / seconds, [(t or start) - start for t in first]


def people(n: int) -> str:
    return "1 person" if n == 1 else f"{n} people"


def server_rss(pid: int) -> int:
    """Resident bytes of the server's whole process group (API server, engine core, worker)."""
    out = subprocess.run(["ps", "-o", "rss=", "-g", str(pid)], capture_output=True, text=True).stdout
    return sum(int(x) for x in out.split()) * 1024


def start_server(python: str, folder: Path, args: str, log: Path) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(server_command(python, folder, "bench", port, shlex.split(args)), stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    while not healthy(url, timeout=1):
        if proc.poll() is not None or time.perf_counter() - started > 900:
            stop_server(proc)
            sys.exit(f"the vLLM server exited ({proc.returncode}) or was not ready in 15 min; its log:\n"
                     f"{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc, url, time.perf_counter() - started


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a transformers folder (default: the bundled SmolLM2)")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--people", default="1,8,32", help="concurrent people, comma-separated")
    ap.add_argument("--device", default="cpu", help="the HF side's device: cpu or cuda")
    ap.add_argument("--vllm-python", default=os.environ.get("VLLM_PYTHON", ".venv-vllm/bin/python"))
    ap.add_argument("--vllm-args", default=os.environ.get("VLLM_ARGS", CPU_ARGS),
                    help="arguments for vLLM's server (on a GPU: --dtype bfloat16 --gpu-memory-utilization 0.8)")
    args = ap.parse_args(argv)
    args.model = args.model or default_model()
    counts = [int(n) for n in args.people.split(",")]
    if not Path(args.vllm_python).is_file():
        sys.exit(f"{args.vllm_python} is missing: set up vLLM's environment first (./test.sh does, or "
                 "SERVING_BACKEND=vllm ./run.sh --setup).")
    print(f"model {args.model}; {args.tokens} tokens per reply, greedy; HF on {describe_device(args.device)}; "
          f"vLLM: {args.vllm_args}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="bench-vllm-"))
    users = [f"person{i + 1}" for i in range(max(counts))]
    config = TrainConfig(seed=0)
    lm, tokenizer = load_base(args.model)
    save_run(tmp / "run", build_model(lm, tokenizer, config, n_users=len(users)), UserIndex(users), config,
             base_model=args.model)
    del lm
    merged = write_merged(tmp / "run", args.model)
    served = load_run(tmp / "run", merge=True, device=args.device)
    softs = [served.soft_prompt(u) for u in users]
    assert len({tuple(s[0, :4].tolist()) for s in softs}) == len(softs), "people must have different vectors"

    import trainer.core.batch_generation as batch_generation

    batch_generation._eos_ids = lambda model, tokenizer: set()  # exactly --tokens tokens, like ignore_eos
    results: dict[str, dict[int, tuple[float, list[float]]]] = {"hf": {}, "vllm": {}}
    hf = BatchScheduler(served.model.lm, served.tokenizer, max_batch=max(counts), max_wait=0.05)
    timed(hf, softs[:1], 8)  # warm-up
    for n in counts:
        results["hf"][n] = timed(hf, softs[:n], args.tokens)
        print(f"HF, {people(n)}: {results['hf'][n][0]:.1f} tokens/s", flush=True)
    hf.close()
    del served, hf

    log = tmp / "vllm.log"
    proc, url, start_seconds = start_server(args.vllm_python, merged, args.vllm_args, log)
    try:
        memory = server_rss(proc.pid)
        engine = VLLMEngine(lambda _name: url, "bench", tokenizer, input_embedding(merged),
                            extra={"ignore_eos": True})
        timed(engine, softs[:1], 8)  # warm-up
        for n in counts:
            results["vllm"][n] = timed(engine, softs[:n], args.tokens)
            print(f"vLLM, {people(n)}: {results['vllm'][n][0]:.1f} tokens/s", flush=True)
        memory = max(memory, server_rss(proc.pid))
    finally:  # also on Ctrl+C: the server runs in its own session and would outlive this process
        stop_server(proc)

    print("\n| concurrent people | HF tokens/s | vLLM tokens/s | vLLM / HF | HF first token (median, max) | "
          "vLLM first token (median, max) |")
    print("|---|---|---|---|---|---|")
    figures = []
    for n in counts:
        (h, h_first), (v, v_first) = results["hf"][n], results["vllm"][n]
        print(f"| {n} | {h:.1f} | {v:.1f} | {v / h:.2f}x | {statistics.median(h_first):.2f} s, {max(h_first):.2f} s | "
              f"{statistics.median(v_first):.2f} s, {max(v_first):.2f} s |")
        figures.append(Figure("vllm_serving", f"{people(n)}: vLLM / HF aggregate tokens/s",
                              f"{v / h:.2f}x ({v:.1f} / {h:.1f})"))
        figures.append(Figure("vllm_serving", f"{people(n)}: time to first token, median (vLLM, HF)",
                              f"{statistics.median(v_first):.2f} s, {statistics.median(h_first):.2f} s"))
    print(f"\nvLLM server: ready {start_seconds:.0f} s after start, {memory / 2**30:.1f} GiB resident (all its "
          "processes)")
    shutil.rmtree(tmp, ignore_errors=True)
    figures.append(Figure("vllm_serving", "vLLM server start (to /health), resident memory",
                          f"{start_seconds:.0f} s, {memory / 2**30:.1f} GiB"))
    return figures
