"""Every benchmark behind one entry point.

    python -m bench list            what there is, how long it takes, which are in the quick set
    python -m bench NAME [ARGS...]  run one (ARGS go to it; ``python -m bench NAME --help`` lists them)
    python -m bench quick           run the quick set, each in its own process, and print one table
                                    of every figure with its target (the table docs/results.md shows)
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.figures import FIGURES_OUT, read, table, write


@dataclass(frozen=True)
class Benchmark:
    module: str
    about: str
    takes: str  # on this project's 2-core machine
    quick: tuple[str, ...] | None = None  # arguments in the quick set; None = not in it


BENCHMARKS = {
    "prism_import": Benchmark("bench.prism_import", "PRISM import at full size (1,500 people, 68,371 replies)",
                              "about 1 min", quick=()),
    "collection": Benchmark("bench.collection", "first-turn candidates cut at each token cap (PRISM's opening "
                            "prompts, the default sources, the bundled model); with --layout, the distance from a "
                            "reply to its rating slider at desktop and phone sizes",
                            "about 35 min (--prompts 6: 6 min)"),
    "browse": Benchmark("bench.browse", "staff list pages (conversations, pairs) with PRISM's 1,500 people",
                        "about 1 min", quick=()),
    "run_page": Benchmark("bench.run_page", "server time of a run page with 1,000 logged steps", "10 s",
                          quick=()),
    "stream": Benchmark("bench.stream", "chat reply through the whole web path against in-process generate()",
                        "2 min", quick=("--runs", "3")),
    "prompt_cut": Benchmark("bench.prompt_cut", "prompt of a 200-turn chat: bisected cut against one at a time",
                            "2 min", quick=("--turns", "50", "200")),
    "load": Benchmark("bench.load", "10 people x 5 messages at once through the web path, then with a 200-turn chat",
                      "4 min", quick=()),
    "serving_speed": Benchmark("bench.serving_speed", "personalized serving: tokens/s, 8 users batched, refit time",
                               "5 min", quick=("--repeats", "3")),
    "vllm_serving": Benchmark("bench.vllm_serving", "serving on vLLM against the HF path: 1, 8, 32 people with "
                              "different vectors, aggregate tokens/s and time to first token", "about 2 min"),
    "pair_accuracy": Benchmark("bench.pair_accuracy",
                                 "held-out accuracy per group: P-DPO against plain DPO; a newcomer's fast fit",
                                 "about 50 min"),
    "personalize": Benchmark("bench.personalize", "does it personalize? P-DPO against plain DPO through the "
                             "dashboard's evaluation: win-rates per group with intervals, pooled over seeds",
                             "about 20 min per seed with 10 people (the default 20: about an hour a seed)"),
    "ablate": Benchmark("bench.ablate", "which settings serve every group: one change at a time against the start "
                        "form's choices, held-out pair accuracy per group on a validation split of the training "
                        "people (resumable)", "15-25 min per variant"),
    "researcher_path": Benchmark("bench.researcher_path",
                                 "docs/command-line.md's path: PRISM files to a trained, evaluated, fitted model",
                                 "about 35 min"),
    "faults": Benchmark("bench.faults", "faults injected into the running product (workers killed mid-reply, "
                        "mid-run and mid-refit; Redis restarted; the database gone 10 s; a third version loaded "
                        "under load): rows left unfinished, work lost, time to recover", "about 9 min"),
    "memory": Benchmark("bench.memory", "peak memory of a training step against the pre-flight estimate",
                        "about 6 min"),
    "first_run": Benchmark("bench.first_run", "a new user's first run with the start form's defaults: peak memory, "
                           "time against the form's estimate; the paper's settings refused", "about 30 min"),
    "pairing": Benchmark("bench.pairing", "pairing strategies side by side (best versus rest, all ordered pairs, "
                         "weighted by margin): held-out pair accuracy per group on one simulated population "
                         "(resumable)", "about 40 min per seed"),
    "raters": Benchmark("bench.raters", "careless raters among careful ones: the flags found over 50 populations, "
                        "then held-out accuracy trained with and without the flagged (resumable)",
                        "about 27 min a seed (3 by default; --skip-training: under a minute)"),
    "host_syncs": Benchmark("bench.host_syncs", "where the training loop waits for the device: host reads per "
                            "step, one process and two, against reading the loss every step", "about 5 min"),
    "shapes": Benchmark("bench.shapes", "random-weight models of published shapes (Llama 1B and 8B, Qwen 1.5B; tiny "
                        "ones on a CPU), built once as transformers folders", "seconds on a GPU; tiny ones 10 s"),
    "gpu": Benchmark("bench.gpu", "scale on whatever device is here: training speed and peak memory against the "
                     "estimate, serving at 1-128 people (transformers and vLLM), refits, several processes; "
                     "within a budget (resumable)", "--budget-minutes (8 by default)"),
    "newcomer": Benchmark("bench.newcomer", "a newcomer placed after 0-10 answers to onboarding questions, adaptive "
                          "against random: held-out pair accuracy per group, server time per answer, the judged "
                          "win-rate against the generic vectors", "about 80 min (the version is trained once)"),
    "capacity": Benchmark("bench.capacity", "a capacity plan from bench gpu's tables: full PRISM on 1 and 8 devices, "
                          "people served under a 1 s first token, the user table at 10,000 and 1,000,000 people",
                          "a second", quick=()),
    "train_speed": Benchmark("bench.train_speed", "training steps against TRL's DPOTrainer on the same pairs",
                             "11 min (pip install -r requirements-bench.txt first)"),
}


def run_one(name: str, argv: list[str]) -> int:
    module = importlib.import_module(BENCHMARKS[name].module)
    figures = module.main(argv) or []
    write(figures)
    if figures:
        print("\n" + table(figures), flush=True)
    return 0 if all(f.met is not False for f in figures) else 1


def run_quick() -> int:
    quick = {name: b for name, b in BENCHMARKS.items() if b.quick is not None}
    figures, failed, started = [], [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-quick-") as tmp:
        for name, bench in quick.items():
            print(f"\n=== {name}: {bench.about} ({bench.takes}) ===", flush=True)
            out = Path(tmp) / f"{name}.json"
            result = subprocess.run([sys.executable, "-m", "bench", name, *bench.quick],
                                    env={**os.environ, FIGURES_OUT: str(out)})
            if not out.exists():
                failed.append(f"{name} (exit {result.returncode}, no figures)")
            figures.extend(read(out))
    minutes = (time.perf_counter() - started) / 60
    print(f"\n=== the quick set: {len(quick)} benchmarks in {minutes:.1f} min ===\n" + table(figures))
    missed = [f"{f.benchmark}: {f.what}" for f in figures if f.met is False]
    for line in failed:
        print(f"FAILED: {line}")
    for line in missed:
        print(f"target missed: {line}")
    return 1 if failed or missed else 0


def list_all() -> None:
    width = max(map(len, BENCHMARKS))
    for name, b in BENCHMARKS.items():
        quick = "quick" if b.quick is not None else "     "
        print(f"{name:<{width}}  {quick}  {b.takes:<24} {b.about}")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "list":
        list_all()
        return 0
    if command == "quick":
        return run_quick()
    if command not in BENCHMARKS:
        print(f"No benchmark called {command!r}. These exist: {', '.join(BENCHMARKS)} (or: list, quick).",
              file=sys.stderr)
        return 2
    return run_one(command, rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
