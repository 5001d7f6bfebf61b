"""Server time of a run's page with 1,000 logged steps.

    python -m bench run_page [--steps 1000] [--users 150] [--repeat 20]

Builds a completed run with that many logged steps (15 metrics each), 100
gradient-entanglement reports, a per-user table and a user map, in a throw-away
SQLite database (or DATABASE_URL when set), then times the page through
Django's request handler. Side by side: the same series built the obvious way,
from model instances, instead of the column reader the page uses. Also checks
that the page loads nothing from the internet.
"""

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from bench.figures import Figure

METRICS = ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
           "logps/rejected", "grad_norm", "learning_rate/lora", "learning_rate/user", "examples_per_second",
           "tokens_per_second", "epoch", "step", "eval/loss"]


def naive_series(run) -> dict:
    """The obvious way: one model instance per row, then dict juggling."""
    from trainer.models import RunLog

    series: dict = {}
    for row in RunLog.objects.filter(run=run).order_by("kind", "step"):
        columns = series.setdefault(row.kind, {"step": []})
        columns["step"].append(row.step)
        for name, value in row.values.items():
            columns.setdefault(name, []).append(value)
    return series


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm caches (templates, query plans)
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--users", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alignment_site.settings")
    os.environ.update(DEBUG="0", SECURE_COOKIES="0", SECRET_KEY=os.environ.get("SECRET_KEY", "bench-only-" + "k3y-" * 12),
                      ALLOWED_HOSTS="testserver")
    import django

    django.setup()
    import random

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from trainer import selectors
    from trainer.models import RunLog, TrainingRun

    call_command("migrate", verbosity=0)
    rng = random.Random(0)
    staff = get_user_model().objects.create_user("bench-staff", password="x", is_staff=True)
    users = [f"user{i}" for i in range(args.users)]
    run = TrainingRun.objects.create(
        name="bench", created_by=staff, status=TrainingRun.Status.COMPLETED, step=args.steps,
        total_steps=args.steps, config={"user_model": "individual", "loss": "dpo", "n_user_tokens": 10},
        evaluation={"accuracy": 0.9, "n": 1000, "seen": {"n": 900, "accuracy": 0.91},
                    "unseen": {"n": 100, "accuracy": 0.7}, "groups": {"A": {"n": 700, "accuracy": 0.9}},
                    "per_user": [{"user_id": u, "seen": True, "n": 7, "accuracy": rng.random(), "margin": 0.1,
                                  "group": "A"} for u in users]},
        user_map=[{"user_id": u, "x": rng.random(), "y": rng.random(), "generic": False} for u in users],
        diagnostics=[{"step": s, "entanglement/inner": rng.random(), "entanglement/cosine": rng.random(),
                      "entanglement/grad_norm_chosen": 1.0, "entanglement/grad_norm_rejected": 1.0,
                      "entanglement/share_chosen_down": 0.3, "entanglement/share_rejected_up": 0.2}
                     for s in range(10, args.steps + 1, max(1, args.steps // 100))])
    RunLog.objects.bulk_create([RunLog(run=run, step=s, values={m: rng.random() for m in METRICS})
                                for s in range(1, args.steps + 1)], batch_size=500)
    client = Client()
    client.force_login(staff)
    url = reverse("run_detail", args=[run.pk])
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    html = page.content.decode()
    external = re.findall(r'(?:src|href)="(https?://[^"]+)"', html)

    page_ms = timed(lambda: client.get(url), args.repeat)
    ours_ms = timed(lambda: selectors.run_series(run), args.repeat)
    naive_ms = timed(lambda: naive_series(run), args.repeat)
    p95 = lambda xs: sorted(xs)[max(0, int(round(0.95 * len(xs))) - 1)]  # noqa: E731
    print(f"run page with {args.steps:,} logged steps x {len(METRICS)} metrics, {args.users} users, "
          f"{len(run.diagnostics)} entanglement reports; {len(html) / 1024:.0f} KiB of HTML; "
          f"database {django.db.connection.vendor}; {args.repeat} requests")
    print(f"  page server time: median {statistics.median(page_ms):.0f} ms, p95 {p95(page_ms):.0f} ms "
          f"(target < 300 ms)")
    print(f"  series for the charts, column reader (ours): median {statistics.median(ours_ms):.1f} ms")
    print(f"  series for the charts, model instances (obvious): median {statistics.median(naive_ms):.1f} ms")
    print(f"  ratio obvious / ours: {statistics.median(naive_ms) / statistics.median(ours_ms):.2f}x")
    print(f"  resources loaded from the internet: {len(external)} {external[:3] if external else ''}")
    ratio = statistics.median(naive_ms) / statistics.median(ours_ms)
    return [
        Figure("run_page", f"run page server time, {args.steps:,} steps (median / p95)",
               f"{statistics.median(page_ms):.0f} / {p95(page_ms):.0f} ms", "< 300 ms", p95(page_ms) < 300),
        Figure("run_page", "chart series: model instances / column reader (time)", f"{ratio:.2f}x"),
        Figure("run_page", "resources loaded from the internet", str(len(external)), "0", not external),
    ]
