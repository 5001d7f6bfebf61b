"""The researcher's path without a browser, timed: PRISM files in, a trained, evaluated, personalized model out.

    python -m bench researcher_path [--model bundled] [--steps 30] [--people 10]

Runs the commands of docs/command-line.md, "From PRISM files to a personalized model
without the browser", in order, each as its own process in a fresh data folder
(SQLite): make PRISM-format files rated by simulated people who disagree on
format (prose or lists), import, export, train P-DPO and plain DPO, evaluate
both per hidden group, fit a person held out of training from 10 pairs, and
generate a reply for them. Prints each command with its wall time, and the
evaluation table. A figure fails when a command fails or prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.figures import Figure

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--people", type=int, default=10)
    ap.add_argument("--seed", type=int, default=23, help="of the simulated people (the tests use others)")
    ap.add_argument("--keep", type=Path, help="use this folder and keep it (default: a temporary one)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="researcher-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, DATA_DIR=str(root / "data"), DATABASE_URL="", PYTHONUNBUFFERED="1",
                   SECRET_KEY=os.environ.get("SECRET_KEY") or "researcher-path-benchmark-" + "k" * 40)
        figures, outputs = [], {}

        def step(label: str, *command: str) -> str:
            shown = "python manage.py " + " ".join(shlex.quote(c) for c in command)
            print(f"\n$ {shown}", flush=True)
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "manage.py", *command], cwd=REPO, env=env, text=True,
                                  capture_output=True)
            seconds = time.perf_counter() - start
            tail = proc.stdout.strip().splitlines()[-12:]
            print("\n".join(tail), flush=True)
            clean = proc.returncode == 0 and "Traceback" not in proc.stderr + proc.stdout
            if not clean:
                print(proc.stderr[-3000:], flush=True)
            figures.append(Figure("researcher_path", f"{label}: {shown.split(' --')[0]}", f"{seconds:.0f} s",
                                  "exit 0, no traceback", clean))
            outputs[label] = proc.stdout
            return proc.stdout

        files, run, plain = root / "prism", root / "runs" / "p-dpo", root / "runs" / "dpo"
        step("migrate", "migrate", "-v", "0")
        step("make files", "make_prism_files", str(files), "--dimension", "format", "--people", str(args.people),
             "--seed", str(args.seed))
        step("import", "import_prism", str(files))
        step("export", "export_pairs", str(root / "pairs.jsonl"), "--stats")
        common = ["--model", args.model, "--pairs", str(root / "pairs.jsonl"), "--steps", str(args.steps)]
        step("train P-DPO", "train", *common, "--out", str(run))
        step("train DPO", "train", *common, "--plain", "--out", str(plain))
        step("evaluate", "evaluate", "--run", str(run), "--baseline", str(plain), "--groups",
             str(files / "hidden_groups.jsonl"))
        unseen = json.loads((run / "metrics.json").read_text())["split"]["unseen_user_ids"] \
            if (run / "metrics.json").is_file() else []
        if unseen:
            step("fit newcomer", "fit_user", "--run", str(run), "--user", unseen[0], "--max-pairs", "10")
            step("generate", "generate", "--run", str(run), "--user", unseen[0], "--prompt",
                 "How should I prepare for a job interview?", "--max-new-tokens", "80")
        print("\n| command | wall time |\n|---|---|")
        for f in figures:
            print(f"| `{f.what.split(': ', 1)[1]}` | {f.value} |")
    return figures
