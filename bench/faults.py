"""Faults injected into the running product, and what each one leaves behind.

    python -m bench faults [--only reply-kill,run-kill,...] [--tokens 48]

The product on loopback with the bundled model: a `generate` worker (threads pool, as ./run.sh starts it), a
`train` worker, PostgreSQL (a throw-away database, BENCH_DATABASE_URL, reached by the workers through a relay
the benchmark can cut) and a Redis server of the benchmark's own on a free port (so restarting it touches no
other Redis). Replies, runs and refits are asked for through the product's services, as its pages do. Killed
workers are started again at once, as ./run.sh's supervisor does; bookkeeping runs every 5 s with short
timeouts (printed), so recovery here is quicker than with the defaults by those timeouts. A reply's worker
touches it every 5 s, so a database outage fails no reply while it is shorter than REPLY_STALL_SECONDS
less 5 s (30 s here: 10 s of outage fits; with the default 120 s, nearly two minutes do).

Faults, in order: a `generate` worker SIGKILLed while it writes replies; the `train` worker SIGKILLed mid-run,
then mid-refit; Redis killed and started again, empty, while replies stream; the database unanswering for
10 s while replies stream and a run trains; a third version loaded while replies wait for the first.

For each: the rows left in a non-final state once bookkeeping has had its turn (target 0), the work lost —
replies not written, runs not completed, refits not done after at most one Retry, Resume or new request, as a
person would press (target 0) — and the time from the fault until everything it touched is done again.
Each fault's result is written to ``faults.json`` in the work folder as it finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.figures import Figure
from bench.stack import Process, fresh_database, pings, stream_length, wait

REPO = Path(__file__).resolve().parents[1]
FAULTS = ("reply-kill", "run-kill", "refit-kill", "redis-restart", "database-10s", "third-version")
BOOKKEEPING = {"BOOKKEEPING_SECONDS": "5", "REPLY_STALL_SECONDS": "30", "TRAIN_HEARTBEAT_SECONDS": "2",
               "TRAIN_HEARTBEAT_TIMEOUT": "20", "QUEUED_LOST_SECONDS": "5", "FIT_STALL_SECONDS": "60"}
# A run of a few steps on the bundled model: short sequences, two pairs a step, a checkpoint every 2 steps.
RUN = {"user_model": "individual", "batch_size": 2, "micro_batch_size": 2, "n_user_tokens": 2, "epochs": 1,
       "lr_lora": 1e-4, "lr_user": 1e-2, "warmup_steps": 0, "log_every": 1, "max_prompt_length": 48,
       "max_length": 96, "diagnostics_every": 0, "checkpoint_every": 2}
DATA = {"min_pairs": 1, "unseen_fraction": 0.0, "test_fraction": 0.2}
ENDED = ("completed", "failed", "cancelled")


@dataclass
class Outcome:
    fault: str
    lost: int  # work not done after at most one Retry / Resume / new request
    failed: int  # work that ended failed, with its reason, and was retried / resumed / asked again
    recover_s: float  # from the fault until everything it touched is done again
    what: str  # what was in flight
    non_final: int = -1  # rows in a non-final state after recovery and bookkeeping


class Bench:
    def __init__(self, folder: Path, tokens: int):
        self.folder = folder
        self.tokens = tokens

    # --- the stack -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        from tests.outage import Outage
        from tests.services import celery_worker_cmd, free_port

        if not shutil.which("redis-server"):
            raise SystemExit("bench faults starts a Redis server of its own: install redis-server (Debian: "
                             "apt-get install redis-server).")
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.start_redis()
        database = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_faults")
        fresh_database(database)
        self.outage = Outage(database).__enter__()
        secret = "bench-faults-" + "k3y-" * 12
        os.environ.update(DJANGO_SETTINGS_MODULE="alignment_site.settings", DATABASE_URL=database,
                          REDIS_URL=self.redis_url, SECRET_KEY=secret, SECURE_COOKIES="0",
                          ARTIFACTS_DIR=str(self.folder / "artifacts"), CHAT_RATE_PER_MINUTE="0",
                          GENERATION_MAX_PENDING="1000", **BOOKKEEPING)
        os.environ.setdefault("DATA_DIR", str(REPO / "data"))
        import django

        django.setup()
        from django.core.management import call_command

        from bench.figures import default_model

        self.model = default_model()
        call_command("migrate", verbosity=0)
        env = {**os.environ, "DATABASE_URL": self.outage.url, "BASE_MODEL": self.model, "PYTHONUNBUFFERED": "1",
               "CHAT_MAX_NEW_TOKENS": str(self.tokens), "CHAT_TEMPERATURE": "0.7", "GENERATE_BATCH_SIZE": "2"}
        self.generate = Process("generate", celery_worker_cmd("generate", "generate@faults", threads=8), env,
                                self.folder, "generate@faults ready.")
        self.train = Process("train", celery_worker_cmd("train", "train@faults"), env, self.folder,
                             "train@faults ready.")
        os.environ["BASE_MODEL"] = self.model
        self.people, self.staff = self.population()
        for process in (self.generate, self.train):
            print(f"  {process.name} worker ready in {process.start():.0f} s", flush=True)
        self.stopping = threading.Event()
        threading.Thread(target=self.supervise, name="supervisor", daemon=True).start()

    def supervise(self) -> None:
        while not self.stopping.wait(0.5):
            for process in (self.generate, self.train):
                process.supervise()

    def exits(self) -> list[str]:
        """The exits nobody asked for since the last look."""
        found = [e for p in (self.generate, self.train) for e in p.exits]
        for p in (self.generate, self.train):
            p.exits.clear()
        return found

    def start_redis(self) -> None:
        import redis

        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis.from_url(self.redis_url)
        if not wait(lambda: pings(client), 20, what="redis-server"):
            raise SystemExit(f"redis-server did not answer on port {self.redis_port}")

    def teardown(self) -> None:
        if getattr(self, "stopping", None):
            self.stopping.set()
        for process in (getattr(self, "generate", None), getattr(self, "train", None)):
            if process:
                process.stop()
        if getattr(self, "outage", None):
            self.outage.__exit__(None, None, None)
        if getattr(self, "redis_proc", None):
            self.redis_proc.kill()

    def population(self):
        from django.contrib.auth import get_user_model

        from tests.factories import population

        people = population(people=6, conversations=4)
        staff = get_user_model().objects.create_user("staff", password="bench-staff-pw-7", is_staff=True)
        return people, staff

    # --- what people ask for ---------------------------------------------------------------------------------
    def ask(self, n: int) -> list[int]:
        """``n`` chat messages, one per person (round robin), each answered by the active version."""
        from users.chat.services import conversation_create, personal_chat_send

        ids = []
        for i in range(n):
            user = self.people[i % len(self.people)]
            conversation = conversation_create(user=user)
            ids.append(personal_chat_send(conversation=conversation, text=f"Give me a tip for a good week ({i}).").pk)
        return ids

    def replies(self, ids):
        from users.models import Reply

        return list(Reply.objects.filter(pk__in=ids))

    def ended(self, ids) -> bool:
        from users.models import Reply

        return not any(r.status in (Reply.Status.QUEUED, Reply.Status.STREAMING) for r in self.replies(ids))

    def retried_until_done(self, ids, timeout: float = 300) -> tuple[int, int]:
        """Retry every reply that failed (once), wait for them: (how many failed, how many are still not
        written)."""
        from users.conversations.services import reply_retry
        from users.models import Reply

        wait(lambda: self.ended(ids), timeout, what="replies to end")
        failed = [r for r in self.replies(ids) if r.status in (Reply.Status.FAILED, Reply.Status.STOPPED)]
        for reply in failed:
            reply_retry(reply=reply)
        wait(lambda: self.ended(ids), timeout, what="retried replies")
        return len(failed), sum(1 for r in self.replies(ids) if r.status != Reply.Status.DONE or not r.content)

    def streaming(self, ids, at_least: int) -> bool:
        import redis

        from users.models import Reply

        client = redis.Redis.from_url(self.redis_url)
        rows = [r for r in self.replies(ids) if r.status == Reply.Status.STREAMING]
        return len(rows) >= at_least and any(stream_length(client, r.stream_key) > 0 for r in rows)

    def start_run(self):
        from trainer import services

        return services.run_create(created_by=self.staff, name="faults", config=RUN, data_filter=DATA,
                                   with_baseline=False)

    def run_status(self, run) -> str:
        run.refresh_from_db()
        return run.status

    def ask_refit(self, user, run):
        from users.chat.services import fastfit_enqueue
        from users.models import VectorFit

        fit = VectorFit.objects.create(user=user, run=run, pairs_total=4)
        fastfit_enqueue(fit_id=fit.pk)
        return fit

    def non_final(self) -> int:
        """Rows that something should still be working on, once bookkeeping had a round and nothing is."""
        from trainer.models import TrainingRun
        from users.models import Reply, VectorFit

        time.sleep(2 * int(BOOKKEEPING["BOOKKEEPING_SECONDS"]))
        return (Reply.objects.filter(status__in=[Reply.Status.QUEUED, Reply.Status.STREAMING]).count()
                + TrainingRun.objects.filter(status__in=[TrainingRun.Status.QUEUED,
                                                         TrainingRun.Status.RUNNING]).count()
                + VectorFit.objects.filter(status__in=[VectorFit.Status.QUEUED, VectorFit.Status.RUNNING]).count())

    # --- the faults ------------------------------------------------------------------------------------------
    def reply_kill(self) -> Outcome:
        ids = self.ask(6)
        wait(lambda: self.streaming(ids, 4), 300, what="replies to stream")
        at = time.monotonic()
        self.generate.kill()  # and started again: the new process fails what the old one held
        failed, lost = self.retried_until_done(ids)
        return Outcome("reply-kill", lost, failed, time.monotonic() - at, "6 chat replies, 4 or more streaming")

    def run_kill(self) -> Outcome:
        from trainer import services
        from trainer.models import TrainingRun

        run = self.start_run()
        self.version = run
        wait(lambda: (run.refresh_from_db() or run.step) >= 3, 900, what="the run to reach step 3")
        at = time.monotonic()
        self.train.kill()
        wait(lambda: self.run_status(run) == TrainingRun.Status.FAILED, 120, what="the killed run to be failed")
        print(f"  run failed with: {run.error[:100]}", flush=True)
        if run.status == TrainingRun.Status.FAILED:
            services.run_resume(run=run)
        wait(lambda: self.run_status(run) in ENDED, 1200, what="the resumed run")
        lost = int(run.status != TrainingRun.Status.COMPLETED)
        recover = time.monotonic() - at
        print(f"  resumed from {run.data_summary.get('resumed_from')}, step {run.step}/{run.total_steps}",
              flush=True)
        if run.status == TrainingRun.Status.COMPLETED:
            services.run_activate(run=run, user=self.staff, confirmed=True)
        return Outcome("run-kill", lost, 1, recover, f"a run of {run.total_steps} steps, at step 3")

    def refit_kill(self) -> Outcome:
        from users.models import VectorFit

        person = self.people[2]
        fit = self.ask_refit(person, self.version)
        wait(lambda: VectorFit.objects.get(pk=fit.pk).status == VectorFit.Status.RUNNING, 300,
             what="the refit to start")
        time.sleep(2)  # into the fit
        at = time.monotonic()
        self.train.kill()
        wait(lambda: VectorFit.objects.get(pk=fit.pk).status == VectorFit.Status.FAILED, 60,
             what="the killed refit to be failed")
        again = self.ask_refit(person, self.version)  # the person asks again
        wait(lambda: VectorFit.objects.get(pk=again.pk).status in (VectorFit.Status.DONE, VectorFit.Status.FAILED),
             600, what="the refit asked again")
        lost = int(VectorFit.objects.get(pk=again.pk).status != VectorFit.Status.DONE)
        failed = int(VectorFit.objects.get(pk=fit.pk).status == VectorFit.Status.FAILED)
        return Outcome("refit-kill", lost, failed, time.monotonic() - at, "one person's refit")

    def redis_restart(self) -> Outcome:
        ids = self.ask(12)  # 8 threads: some stream, the rest wait in the queue
        wait(lambda: self.streaming(ids, 3), 300, what="replies to stream")
        at = time.monotonic()
        self.redis_proc.kill()
        self.redis_proc.wait()
        self.start_redis()  # empty: streams and queued requests are gone
        failed, lost = self.retried_until_done(ids)
        return Outcome("redis-restart", lost, failed, time.monotonic() - at, "12 chat replies, streaming and queued")

    def database_10s(self) -> Outcome:
        from trainer.models import TrainingRun

        run = self.start_run()
        wait(lambda: (run.refresh_from_db() or run.step) >= 1, 900, what="the run to start training")
        ids = self.ask(6)
        wait(lambda: self.streaming(ids, 3), 300, what="replies to stream")
        at = time.monotonic()
        step = self.run_status(run) and run.step
        self.outage.cut()
        time.sleep(10)
        self.outage.restore()
        failed, lost = self.retried_until_done(ids)
        wait(lambda: self.run_status(run) in ENDED, 1200, what="the run")
        if run.status == TrainingRun.Status.FAILED:  # a person would press Resume
            from trainer import services

            failed += 1
            services.run_resume(run=run)
            wait(lambda: self.run_status(run) in ENDED, 1200, what="the resumed run")
        lost += int(run.status != TrainingRun.Status.COMPLETED)
        return Outcome("database-10s", lost, failed, time.monotonic() - at,
                       f"6 chat replies streaming, a run of {run.total_steps} steps at step {step} (ended by attempt "
                       f"{run.attempts})")

    def third_version(self) -> Outcome:
        from trainer import services
        from trainer.models import TrainingRun

        def version(name):
            return TrainingRun.objects.create(name=name, created_by=self.staff, status=TrainingRun.Status.COMPLETED,
                                              config=self.version.config, artifacts=self.version.artifacts,
                                              evaluation=self.version.evaluation)

        services.run_activate(run=self.version, user=self.staff, confirmed=True)
        warm = self.ask(1)
        wait(lambda: self.ended(warm), 300, what="the first version to load")
        ids = self.ask(6)  # two in a batch, four wait behind them
        wait(lambda: self.streaming(ids, 4), 300, what="replies to stream")
        at = time.monotonic()
        for name in ("second", "third"):
            services.run_activate(run=version(name), user=self.staff, confirmed=True)
            loaded = self.ask(1)  # the next reply loads the newly active version
            wait(lambda: self.ended(loaded), 300, what=f"the {name} version to load")
            ids += loaded
        wait(lambda: self.ended(ids), 300, what="replies to end")
        failed, lost = self.retried_until_done(ids)
        return Outcome("third-version", lost, failed, time.monotonic() - at,
                       "6 replies on the first version; two newer ones activated and loaded")


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    ap.add_argument("--tokens", type=int, default=48, help="new tokens per reply")
    args = ap.parse_args(argv)
    chosen = [f for f in args.only.split(",") if f]
    unknown = set(chosen) - set(FAULTS)
    if unknown:
        raise SystemExit(f"unknown faults {sorted(unknown)}; choose from {', '.join(FAULTS)}")
    if any(f in chosen for f in ("refit-kill", "third-version")) and "run-kill" not in chosen:
        chosen.insert(0, "run-kill")  # they need the version that run trains
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: the finally below stops what it started
    folder = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    bench = Bench(folder, args.tokens)
    outcomes: list[Outcome] = []
    print(f"work folder {folder}; bookkeeping {BOOKKEEPING}", flush=True)
    try:
        bench.setup()
        for name in [f for f in FAULTS if f in chosen]:
            print(f"\n{name}", flush=True)
            outcome = getattr(bench, name.replace("-", "_"))()
            outcome.non_final = bench.non_final()
            exits = bench.exits()
            if exits:
                outcome.what += " [" + "; ".join(exits) + "]"
            outcomes.append(outcome)
            (folder / "faults.json").write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
            print(f"  {outcome.what}: non-final rows {outcome.non_final}, failed with a reason {outcome.failed}, "
                  f"lost {outcome.lost}, recovered in {outcome.recover_s:.0f} s", flush=True)
    finally:
        bench.teardown()
    print("\n| fault | in flight | non-final rows | failed with a reason (then retried) | lost | recovered in |\n"
          "|---|---|---|---|---|---|")
    for o in outcomes:
        print(f"| {o.fault} | {o.what} | {o.non_final} | {o.failed} | {o.lost} | {o.recover_s:.0f} s |")
    figures = []
    for o in outcomes:
        figures.append(Figure("faults", f"{o.fault}: non-final rows / lost", f"{o.non_final} / {o.lost}", "0 / 0",
                              o.non_final == 0 and o.lost == 0))
        figures.append(Figure("faults", f"{o.fault}: recovered in", f"{o.recover_s:.0f} s"))
    return figures
