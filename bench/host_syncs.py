"""Where the training loop waits for the device: host reads per optimizer step, one process and two.

    python -m bench host_syncs [--model PATH] [--pairs 24] [--epochs 2] [--log-every 4]

A host read is an operation that makes the host wait for the device's answer on an accelerator:
``item``, ``tolist``, ``bool``/``float``/``int`` of a tensor, ``numpy`` and ``cpu``. Each is counted as the
loop runs (a ``TorchFunctionMode`` sees every tensor call), so the counts are the same on a CPU as on a GPU,
where each of them is a synchronisation. Moving a tensor to the device is not counted: it does not wait.

Counted per step, apart: the steps of the first epoch (each pair's reference pass copies its log-probs to
the host once), the later ones, and the log steps (metrics and the NaN check); and apart again, the reads the
project's own lines ask for and those inside libraries (transformers checks the attention mask on every
forward pass). Side by side: the loop as it runs (log every ``--log-every`` steps), the obvious alternative
of reading the loss every step (``--log-every 1``), and two processes (DDP over gloo) with a cancel check,
which process 0 broadcasts to both between micro-batches so that they stop at the same one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import traceback
from collections import Counter
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from bench.figures import Figure, default_model
from trainer.core.config import TrainConfig
from trainer.core.ports import free_port

READS = {"item", "tolist", "__bool__", "__float__", "__int__", "numpy", "cpu",
         "nonzero", "masked_select", "unique", "unique_consecutive"}  # the last: a shape only the data gives
INDEXING = {"__getitem__", "__setitem__", "index_put_", "index_put"}  # a read when indexed by a boolean mask
ROOT = Path(__file__).resolve().parents[1]
TORCH = str(Path(torch.__file__).parent)


def _boolean_index(args) -> bool:
    found = [a for a in args[1:2] for a in (a if isinstance(a, (tuple, list)) else (a,))]
    return any(torch.is_tensor(a) and a.dtype in (torch.bool, torch.uint8) for a in found)


class HostReads(TorchFunctionMode):
    """Counts host reads, each under the line outside torch that asked for it. The optimizer's own step
    counters are left out: torch keeps them on the host, so reading them waits for nothing."""

    def __init__(self):
        super().__init__()
        self.count = self.ours = 0  # all, and those the project's own lines asked for
        self.where: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS or (name in INDEXING and _boolean_index(args)):
            stack = traceback.extract_stack()[:-1]
            if not any(f.filename.startswith(f"{TORCH}/optim/") for f in stack):
                self.count += 1
                frame = next((f for f in reversed(stack) if not f.filename.startswith(TORCH)), stack[-1])
                mine = frame.filename.startswith(f"{ROOT}/") and "site-packages" not in frame.filename
                self.ours += mine
                where = frame.filename.split("site-packages/")[-1].removeprefix(f"{ROOT}/")
                self.where[f"{where}:{frame.lineno} {name}"] += 1
        return func(*args, **(kwargs or {}))


def pairs_for(n: int):
    from users.synthetic.pairs import make_pairs
    from users.synthetic.personas import sample_population
    from users.synthetic.prompts import PRISM_PROMPTS, SHORT_SYSTEM, prompts_or_default

    return make_pairs(sample_population(4, seed=0), prompts_or_default(PRISM_PROMPTS), conversations_per_user=n, seed=1,
                      system=SHORT_SYSTEM, detailed_sentences=(1, 1))[:n]


def measure(model: str, n_pairs: int, epochs: float, log_every: int, cancel_check: bool) -> dict:
    """Train with host reads counted; per step: its reads, whether it logged, its epoch."""
    from trainer.core.loop import train

    config = TrainConfig(batch_size=4, micro_batch_size=1, epochs=epochs, warmup_steps=0, log_every=log_every,
                         diagnostics_every=0, max_prompt_length=64, max_length=128, device="cpu")
    pairs = pairs_for(n_pairs)
    reads, steps, mark = HostReads(), [], []

    def on_phase(name, done, total):
        if name == "training" and not mark:
            mark[:] = reads.count, reads.ours  # setup (model load, tokenising) ends here

    def progress(step, total, metrics):
        steps.append({"reads": reads.count - mark[0], "ours": reads.ours - mark[1], "log": metrics is not None,
                      "epoch": int((step - 1) * config.batch_size // len(pairs))})
        mark[:] = reads.count, reads.ours

    with reads:
        train(config, model, pairs, log=lambda *_: None, progress=progress, on_phase=on_phase,
              should_cancel=(lambda: False) if cancel_check else None)
    return {"steps": steps, "where": dict(reads.where.most_common(12)),
            "micro_batches": config.batch_size // int(os.environ.get("WORLD_SIZE", "1")) // config.micro_batch_size}


def _process(rank: int, world: int, port: int, out: str, args: tuple) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), CUDA_VISIBLE_DEVICES="")
    torch.set_num_threads(1)
    result = measure(*args)
    import torch.distributed as dist

    dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(json.dumps(result))


def two_processes(*args) -> dict:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rank0.json"
        mp.spawn(_process, args=(2, free_port(), str(out), args), nprocs=2, join=True)
        return json.loads(out.read_text())


def summary(result: dict) -> dict:
    """Mean reads per step (all, and the project's own) in each kind of step."""
    steps = result["steps"]

    def mean(rows, key="reads"):
        return statistics.mean(r[key] for r in rows) if rows else float("nan")

    later = [s for s in steps if s["epoch"] > 0 and not s["log"]]
    return {"first epoch": mean([s for s in steps if s["epoch"] == 0 and not s["log"]]),
            "later epochs": mean(later), "later epochs, ours": mean(later, "ours"),
            "log step": mean([s for s in steps if s["log"] and s["epoch"] > 0]),
            "per step, all": mean(steps), "steps": len(steps), "micro_batches": result["micro_batches"]}


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a transformers folder (default: the bundled SmolLM2)")
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--log-every", type=int, default=4)
    args = ap.parse_args(argv)
    model = args.model or default_model()
    layouts = {
        f"1 process, log every {args.log_every}": lambda: measure(model, args.pairs, args.epochs, args.log_every,
                                                                  False),
        "1 process, log every step": lambda: measure(model, args.pairs, args.epochs, 1, False),
        f"2 processes, log every {args.log_every}, cancel check": lambda: two_processes(
            model, args.pairs, args.epochs, args.log_every, True),
    }
    print(f"model {model}; {args.pairs} pairs x {args.epochs:g} epochs, batch 4 of micro-batches of 1", flush=True)
    rows = {}
    for name, run in layouts.items():
        result = run()
        rows[name] = summary(result)
        print(f"\n{name}: where the reads are asked for (all steps and setup):", flush=True)
        for where, n in result["where"].items():
            print(f"  {n:5d}  {where}")
    print("\n| layout | steps | micro-batches per step and process | host reads per step: first epoch, not "
          "logged | later epochs, not logged (the project's own) | a log step, later epochs | all steps |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        shown = {k: "-" if isinstance(v, float) and math.isnan(v) else f"{v:.1f}" for k, v in r.items()}
        print(f"| {name} | {r['steps']} | {r['micro_batches']} | {shown['first epoch']} | {shown['later epochs']} "
              f"({shown['later epochs, ours']}) | {shown['log step']} | {shown['per step, all']} |")
    ours, every = rows[f"1 process, log every {args.log_every}"], rows["1 process, log every step"]
    two = rows[f"2 processes, log every {args.log_every}, cancel check"]
    return [
        Figure("host_syncs", "host reads per step after the first epoch, not a log step, asked for by the "
               "project's code (1 process)", f"{ours['later epochs, ours']:.0f}", "0",
               ours["later epochs, ours"] == 0),
        Figure("host_syncs", "... asked for by libraries (transformers' attention-mask check), per micro-batch",
               f"{(ours['later epochs'] - ours['later epochs, ours']) / ours['micro_batches']:.0f}"),
        Figure("host_syncs", "... asked for by the project's code, 2 processes with a cancel check (its broadcast "
               "per micro-batch, and reference passes of pairs a process meets for the first time)",
               f"{two['later epochs, ours']:.1f}"),
        Figure("host_syncs", "host reads over a whole run: log every step / log every "
               f"{args.log_every}", f"{every['per step, all'] / ours['per step, all']:.2f}x "
               f"({every['per step, all']:.1f} / {ours['per step, all']:.1f} per step)"),
    ]


if __name__ == "__main__":
    main()
