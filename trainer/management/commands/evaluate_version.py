import json
import time

from django.core.management.base import BaseCommand, CommandError

from trainer.models import PersonalEvaluation, TrainingRun
from trainer.personalization import report, services


class Command(BaseCommand):
    help = ("Does a version personalize? Replies to each person's held-out prompts from their own vectors, plain "
            "DPO (the run's baseline), the generic vectors and the base model, judged per person; prints the "
            "report (pooled with the run's repeats). Queued for a train worker, or run here with --here.")

    def add_arguments(self, parser):
        parser.add_argument("run", type=int, help="the id of a completed personalized run")
        parser.add_argument("--here", action="store_true", help="write and judge the replies in this process "
                            "instead of on a train worker")
        defaults = ", ".join(f"{k}={v}" for k, v in services.DEFAULTS.items())
        parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                            help=f"an evaluation setting (defaults: {defaults})")
        parser.add_argument("--report-only", action="store_true", help="print the report of the evaluations there are")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument("--by", default="group", choices=report.GROUPINGS, help="what the groups are")

    def handle(self, *args, **options):
        run, here = options["run"], options["here"]
        found = TrainingRun.objects.filter(pk=run).select_related("baseline").first()
        if found is None:
            raise CommandError(f"There is no run {run}.")
        if not options["report_only"]:
            overrides = {}
            for item in options["set"]:
                name, sep, value = item.partition("=")
                if not sep or name not in services.DEFAULTS:
                    raise CommandError(f"--set {item}: use NAME=VALUE with NAME one of {', '.join(services.DEFAULTS)}")
                overrides[name] = type(services.DEFAULTS[name])(value)
            try:
                evaluation = services.evaluation_start(run=found, overrides=overrides, enqueue=not here)
            except services.EvaluationStateError as exc:
                raise CommandError(str(exc)) from exc
            if here:
                from trainer.worker.personalization import execute

                started = time.perf_counter()
                execute(evaluation.pk)
                evaluation.refresh_from_db()
                self.stdout.write(f"evaluation {evaluation.pk}: {evaluation.status} in "
                                  f"{time.perf_counter() - started:.0f} s")
                if evaluation.status != PersonalEvaluation.Status.COMPLETED:
                    raise CommandError(evaluation.error or evaluation.status)
            else:
                self.stdout.write(f"evaluation {evaluation.pk} queued for a train worker; follow it on the run's page")
                return
        self.stdout.write(render_report(report.personalization_report(found, group_by=options["by"]),
                                        as_json=options["json"]))


def render_report(found: dict | None, *, as_json: bool = False) -> str:
    """The report as text tables (or JSON)."""
    if found is None:
        return "No completed personalization evaluation for this run (or its repeats) yet."
    if as_json:
        return json.dumps(found, indent=1)
    lines = [f"runs {', '.join(map(str, found['runs']))}; {found['judged']} prompts judged, "
             f"{found['pending']} waiting for their person", ""]
    names = found["opponents"]
    lines.append("| group | people | " + " | ".join(f"own vs {n}" for n in names.values()) +
                 " | words own / plain DPO / generic / base |")
    lines.append("|---" * (len(names) + 3) + "|")
    for g in found["groups"]:
        cells = [_rate(g["vs"][o]) for o in names]
        words = " / ".join(str(g["words"].get(s, "-")) for s in report.SOURCES)
        lines.append(f"| {g['name']} | {g['people']} ({g['share']:.0%}) | " + " | ".join(cells) + f" | {words} |")
    if found["accuracy"]["rows"]:
        lines += ["", "| held-out pair accuracy | this run | plain DPO |", "|---|---|---|"]
        for row in found["accuracy"]["rows"]:
            lines.append(f"| {row['name']} | {_accuracy(row['own'])} | {_accuracy(row['baseline'])} |")
    lines += ["", "each seed, own vectors vs plain DPO:"]
    for s in found["seeds"]:
        lines.append(f"  seed {s['seed']} (run {s['run']}): " + "; ".join(
            f"{g} {_short(per['baseline'])}" for g, per in s["groups"].items()))
    lines += [""] + [f"- {v}" for v in found["verdicts"]]
    return "\n".join(lines)


def _rate(r: dict) -> str:
    return "-" if not r["n"] else f"{r['rate']:.1%} [{r['low'] * 100:.0f}, {r['high'] * 100:.0f}] n={r['n']}"


def _short(r: dict) -> str:
    return "-" if not r["n"] else f"{r['rate']:.0%} (n={r['n']})"


def _accuracy(r: dict | None) -> str:
    return "-" if not r else f"{r['accuracy']:.1%} (n={r['n']})"
