"""Peak memory of a training step against the pre-flight estimate, side by side.

    python -m bench memory [--model PATH] [--fit]

Each configuration trains one optimizer step (one micro-batch, every sequence at
its worst-case length: the prompt at max_prompt_length, the reply up to
max_length) in its own process. The peak is the process's resident-set high-water
mark during the step (reset with /proc/self/clear_refs once the model is loaded),
plus what was resident before it; on CUDA, torch's peak allocated memory. The
estimate is ``trainer.core.memory``. ``--fit`` prints the least-squares factors
to write into that module (every configuration but the held-out ones is used).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench.figures import Figure, default_model

CONFIGS = [  # micro-batch, max_length, max_prompt_length, user model, gradient checkpointing
    (1, 256, 128, "individual", False),
    (2, 256, 128, "individual", False),
    (1, 512, 320, "individual", False),
    (2, 512, 320, "individual", False),
    (4, 512, 320, "individual", False),
    (2, 770, 470, "individual", False),
    (4, 512, 320, "none", False),
    (4, 512, 320, "individual", True),
]
HELD_OUT = {5}  # not used by --fit: the estimate is checked on a configuration it was not fitted to


def proc_status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def worst_case_pairs(n: int, people: int):
    """Pairs whose prompt and replies are each cut at their limits: every sequence at its longest."""
    from trainer.core.data import Pair

    words = " ".join(["river", "bread", "market", "window", "garden", "signal"] * 600)  # far beyond any limit
    return [Pair(f"person{i % people}", [{"role": "user", "content": words}],
                 [{"role": "assistant", "content": "yes " + words}], [{"role": "assistant", "content": "no " + words}],
                 conversation_id=f"c{i}") for i in range(n)]


def child(spec: dict) -> dict:
    """Train one step of ``spec`` here and report the resident memory before it and its peak."""
    import torch

    from trainer.core.config import TrainConfig
    from trainer.core.loop import train

    torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
    micro = spec["micro_batch_size"]
    config = TrainConfig(batch_size=micro, micro_batch_size=micro, max_length=spec["max_length"],
                         max_prompt_length=spec["max_prompt_length"], user_model=spec["user_model"],
                         alpha=0.5 if spec["user_model"] != "none" else 0.0, max_steps=1, warmup_steps=0,
                         gradient_checkpointing=spec["gradient_checkpointing"], log_every=1, bf16=False)
    pairs = worst_case_pairs(micro, people=3)
    seen = {}

    def on_phase(phase, done, total):
        if phase == "training" and "before" not in seen:
            seen["before"] = proc_status("VmRSS")
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to what is resident now

    train(config, spec["model"], pairs, on_phase=on_phase, log=lambda *_: None)
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else proc_status("VmHWM")
    return {"before": seen["before"], "peak": max(peak, seen["before"])}


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a transformers folder (default: the bundled SmolLM2)")
    ap.add_argument("--fit", action="store_true", help="print the least-squares factors for trainer/core/memory.py")
    ap.add_argument("--reuse", type=Path, help="the measurements a previous run saved (--save), instead of "
                                              "measuring again: to compare a refitted estimate")
    ap.add_argument("--save", type=Path, help="write the measurements to this JSON file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return []

    from trainer.core import memory

    model = args.model or default_model()
    shape = memory.shape_of(model)
    print(f"model {model}: {shape.params / 1e6:.0f} M parameters, {shape.layers} layers, fp32", flush=True)
    rows = []
    reused = json.loads(args.reuse.read_text()) if args.reuse else None
    for i, (micro, length, prompt, user_model, checkpointing) in enumerate(CONFIGS):
        spec = {"model": model, "micro_batch_size": micro, "max_length": length, "max_prompt_length": prompt,
                "user_model": user_model, "gradient_checkpointing": checkpointing}
        if reused:
            measured = reused[i]
        else:
            proc = subprocess.run([sys.executable, "-m", "bench.memory", "--child", json.dumps(spec)],
                                  capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"configuration {spec} failed:\n{proc.stderr[-3000:]}")
            measured = json.loads(proc.stdout.strip().splitlines()[-1])
        est = memory.estimate(shape, **_kwargs(spec))
        rows.append((i, spec, measured, est, None))
        print(f"  {i}: micro {micro}, {length} tokens, {user_model}{', checkpointing' if checkpointing else ''}: "
              f"measured {measured['peak'] / memory.GIB:.2f} GiB, estimated {est.peak / memory.GIB:.2f} GiB",
              flush=True)
    if args.save:
        args.save.write_text(json.dumps([measured for _, _, measured, _, _ in rows]))
    if args.fit:
        _fit(rows, shape, memory)
    print("\n| micro-batch | max length | user model | checkpointing | measured peak | estimate "
          "| estimate / measured |")
    print("|---|---|---|---|---|---|---|")
    figures = []
    for i, spec, measured, est, _ in rows:
        ratio = est.peak / measured["peak"]
        print(f"| {spec['micro_batch_size']} | {spec['max_length']} | {spec['user_model']} | "
              f"{'yes' if spec['gradient_checkpointing'] else 'no'} | {measured['peak'] / memory.GIB:.2f} GiB | "
              f"{est.peak / memory.GIB:.2f} GiB | {ratio:.2f}{' (held out of the fit)' if i in HELD_OUT else ''} |")
        figures.append(Figure("memory", f"estimate / measured peak, micro {spec['micro_batch_size']}, "
                                        f"{spec['max_length']} tokens, {spec['user_model']}"
                                        f"{', checkpointing' if spec['gradient_checkpointing'] else ''}",
                              f"{ratio:.2f}", "0.80-1.20", 0.8 <= ratio <= 1.2))
    return figures


def _fit(rows, shape, memory) -> None:
    used = [(shape, _kwargs(spec), measured) for i, spec, measured, _, _ in rows if i not in HELD_OUT]
    f = memory.fit_factors(used, source="python -m bench memory --fit")
    print(f"\nfitted (write them into trainer/core/memory.py's CPU factors): base = {f.base / memory.GIB:.3f} * GIB, "
          f"per_token = {f.per_token:.3f}, attention = {f.attention:.3f}, logits = {f.logits:.3f}, "
          f"checkpointed = {f.checkpointed:.2f}", flush=True)


def _kwargs(spec: dict) -> dict:
    return dict(micro_batch_size=spec["micro_batch_size"], max_length=spec["max_length"],
                max_prompt_length=spec["max_prompt_length"], personalized=spec["user_model"] != "none",
                gradient_checkpointing=spec["gradient_checkpointing"])


if __name__ == "__main__":  # the parent runs each configuration as `python -m bench.memory --child SPEC`
    main()
