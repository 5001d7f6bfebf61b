"""A new user's first run, as the start form offers it: the defaults for this machine's train worker and those
read off the data, on the bundled model, trained by a real Celery worker; its peak memory against 12 GB and its
time against the form's estimate; and the paper's settings, which the form must refuse here with the numbers
and a fix; and whether it ends personalized: held-out pair accuracy per group.

    python -m bench first_run [--people 20] [--keep DIR]

A fresh SQLite database and data folder, a simulated population (``synthesize_population``: opposing groups
on reply length), one `train` worker (solo pool: it trains in its own process, whose peak resident memory,
VmHWM, is the figure), and the run with its plain-DPO baseline, as the form's "Start training" creates it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench.figures import Figure
from bench.stack import setup_django, workdir

GB = 1e9


def peak_rss(pid: int) -> int:
    """Bytes of the process's peak resident memory (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--keep", type=Path, help="use this folder and keep it (default: a temporary one)")
    args = ap.parse_args(argv)
    root = args.keep or workdir("first-run-")
    root.mkdir(parents=True, exist_ok=True)
    model = setup_django(root, DATA_DIR=str(root / "data"), ARTIFACTS_DIR=str(root / "artifacts"),
                         BASE_MODEL=os.environ.get("BASE_MODEL", "bundled"))
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from tests.services import celery_worker_cmd, running, worker_ready
    from trainer import data_defaults, devices, preflight, services
    from trainer.forms import RunForm
    from trainer.models import TrainingRun

    call_command("synthesize_population", people=args.people, seed=5, stdout=open(os.devnull, "w"))
    staff = get_user_model().objects.create_user("first-run-staff", is_staff=True)
    name = "first-run@" + os.uname().nodename
    env = dict(os.environ, BASE_MODEL=model, PYTHONUNBUFFERED="1")
    figures = []
    with running(celery_worker_cmd("train", name), env, root / "worker.log", worker_ready(root / "worker.log", name),
                 timeout=120) as worker:
        deadline = time.monotonic() + 30
        while not any(r.worker == name for r in devices.reports("train")) and time.monotonic() < deadline:
            time.sleep(0.5)
        # The form exactly as a new user opens it: its initial values, the worker's defaults on top, then the
        # settings read off the data.
        initial = {n: f.initial for n, f in RunForm.base_fields.items() if f.initial is not None}
        chosen = data_defaults.form_choices(preflight.form_defaults(), RunForm.initial_data_filter())
        form = RunForm({**initial, **preflight.form_defaults(), **chosen.values, "name": "first run"})
        assert form.is_valid(), form.errors
        print("read off the data:\n" + "\n".join(chosen.lines()), flush=True)
        config = form.validated_config()
        fit = preflight.check(config)
        print(f"worker {name}; defaults: batch {config['batch_size']}, micro-batch {config['micro_batch_size']}, "
              f"{config['max_length']} tokens, gradient checkpointing {config['gradient_checkpointing']}; "
              f"estimated peak {fit.estimate.describe() if fit.estimate else '?'}", flush=True)
        paper_form = RunForm({**initial, "name": "paper"})  # the form's own initial values are the paper's
        assert paper_form.is_valid(), paper_form.errors
        paper = preflight.check(paper_form.validated_config())
        print(f"paper settings: {'fits' if paper.fits else 'refused: ' + paper.refusal()}", flush=True)
        figures.append(Figure("first_run", "paper settings on this machine: refused with a fix",
                              "refused" if not paper.fits and paper.change else "not refused", "refused, with a fix",
                              not paper.fits and bool(paper.change)))

        started = time.perf_counter()
        run = services.run_create(created_by=staff, name="first run", config=config, data_filter=form.data_filter(),
                                  with_baseline=form.cleaned_data["with_baseline"])
        runs = [("P-DPO", run)] + ([("plain DPO", run.baseline)] if run.baseline_id else [])
        # Each run's estimate as the form would show it when the run starts: the first from the guess (nothing
        # measured yet), the baseline from the P-DPO run measured just before it.
        estimates = {"P-DPO": services.run_preview(data_filter=form.data_filter(), config=config)}
        while any(r.status in TrainingRun.ACTIVE for _, r in runs):
            time.sleep(2)
            for kind, r in runs:
                r.refresh_from_db()
                if kind not in estimates and r.status != TrainingRun.Status.QUEUED:
                    estimates[kind] = services.run_preview(data_filter=form.data_filter(), config=r.config)
        peak = peak_rss(worker.pid)
        total = time.perf_counter() - started
    for kind, r in runs:
        took = (r.finished_at - r.started_at).total_seconds()
        estimate = estimates[kind]
        ratio = took / estimate["estimated_seconds"]
        print(f"{kind}: {r.status} in {took:.0f} s, {r.total_steps} steps; the form estimated "
              f"{estimate['estimated_seconds']:.0f} s ({'measured' if estimate['rate_measured'] else 'a guess'}); "
              f"held-out accuracy {r.evaluation.get('accuracy')}; {r.error}", flush=True)
        figures.append(Figure("first_run", f"{kind} run with the form's defaults: time / the form's estimate",
                              f"{ratio:.2f}x ({took:.0f} s / {estimate['estimated_seconds']:.0f} s)", "<= 2x",
                              r.status == TrainingRun.Status.COMPLETED and 0.5 <= ratio <= 2.0))
    for kind, r in runs:  # does the first run end personalized? Plain DPO's figures are printed beside
        for group, row in sorted((r.evaluation.get("groups") or {}).items()):
            accuracy = row.get("accuracy")
            shown = f"{accuracy:.1%} (n={row['n']})" if accuracy is not None else "none"
            print(f"{kind}: held-out pair accuracy of {group}: {shown}", flush=True)
            if kind == "P-DPO":
                figures.append(Figure("first_run", f"P-DPO held-out pair accuracy, {group}", shown, ">= 85%",
                                      accuracy is not None and accuracy >= 0.85))
    figures.append(Figure("first_run", "train worker's peak resident memory (VmHWM), both runs",
                          f"{peak / GB:.1f} GB (estimate {fit.estimate.peak / GB:.1f} GB)", "< 12 GB",
                          peak < 12 * GB))
    print(f"both runs: {total:.0f} s wall", flush=True)
    return figures


if __name__ == "__main__":
    from bench.figures import table

    print(table(main(sys.argv[1:])))
