"""Does it personalize? P-DPO against plain DPO on a simulated population, through the dashboard's own code.

    python -m bench personalize [--dimension length | format+length | two+sides] [--seeds 3] [--people 20]
                                [--side-weight W] [--settings form | tuned] [--keep DIR]

A thin driver of the product's path, with no judging or generation of its own: a fresh SQLite database, a
population rated by people with hidden rules (``population_synthesize``: 70 % / 30 % opposed on the
dimension, or on two at once; ``two+sides`` is format+length where every person also weighs register and
tone by tastes of their own, half to all of ``--side-weight`` 0.5 against the contested dimensions' 1; 20
people make groups of 14 and 6), runs created as the start form creates them (``run_create`` with the plain-DPO
baseline and ``repeats`` seeds) with the settings the form offers when nothing is typed into it (``--settings
form``, the default: the cpu preset, then everything ``trainer.core.defaults`` reads off the data, its data
filter as it opens; ``--steps``, ``--min-margin`` and ``--tokens`` override, as typing into the form would) or
the hand-tuned ones measured before the form read its settings off the data (``--settings tuned``), each trained by the train worker's own function (``training.execute``, here in
this process rather than on a Celery worker), then evaluated by the evaluation task's function
(``personalization.execute``: the four replies to each person's held-out prompts, judged by their hidden rule,
ties as half), and the report the run page shows (``evaluate_version``'s text), pooled over the seeds.

The figures: held-out pair accuracy per group of P-DPO (>= 90 % in both) beside plain DPO's, and the win-rate
of each person's own vectors against plain DPO's replies (>= 70 % for the minority, >= 50 % for the majority),
with 95 % bootstrap intervals.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.figures import Figure
from bench.stack import setup_django, workdir

# Training settings of the run (the cpu preset's shape with the learning rates that personalize in 36 steps
# on this model; see ``python -m bench pair_accuracy``).
SETTINGS = {"user_model": "individual", "loss": "dpo", "batch_size": 8, "micro_batch_size": 4, "lr_lora": 1e-3,
            "lr_user": 5e-2, "warmup_steps": 0, "lora_dropout": 0.0, "max_prompt_length": 128, "max_length": 256,
            "log_every": 5, "checkpoint_every": 0, "diagnostics_every": 0, "n_user_tokens": 10, "alpha": 0.5,
            "beta": 0.5}
MAJORITY_SHARE = 0.7


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dimension", default="length",
                    help="length, format+length, two+sides (format+length with side tastes), or any DIMENSIONS "
                         "joined by +")
    ap.add_argument("--side-weight", type=float, default=None,
                    help="each person's own weights on the other dimensions, relative to the contested ones' 1 "
                         "(default: the population's own: 0.5 for two+sides, else 0)")
    ap.add_argument("--people", type=int, default=20, help="split 70 %% / 30 %%: 20 people are 14 and 6")
    ap.add_argument("--conversations", type=int, default=12, help="per person, one rated turn each")
    ap.add_argument("--settings", choices=("form", "tuned"), default="form",
                    help="form: what the start form offers with nothing typed in (read off the data); tuned: the "
                         "hand-picked SETTINGS, 36 steps, margin 15, 96 tokens")
    ap.add_argument("--steps", type=int, help="optimizer steps of 8 pairs per run (default: the form's; tuned: 36)")
    ap.add_argument("--seeds", type=int, default=3, help="repeats of the run with seeds 0, 1, ...")
    ap.add_argument("--prompts-per-person", type=int, default=4, help="held-out prompts each person judges")
    ap.add_argument("--tokens", type=int, help="new tokens per evaluated reply (default: the form's, read off the "
                                               "chosen replies; tuned: 96)")
    ap.add_argument("--min-margin", type=int,
                    help="the start form's minimum score margin of a pair (default: the form's, read off the "
                         "margins; tuned: 15, which keeps the pairs whose two replies differ on the contested "
                         "dimension in the length population and drops most of those between two replies at "
                         "the same pole)")
    ap.add_argument("--model", default=os.environ.get("BASE_MODEL", "bundled"), help="base model (default: bundled)")
    ap.add_argument("--keep", type=Path, help="use this folder and keep it (default: a temporary one)")
    ap.add_argument("--plan", action="store_true", help="make the population, print the settings; train nothing")
    args = ap.parse_args(argv)
    if args.settings == "tuned":
        args.steps, args.min_margin, args.tokens = args.steps or 36, args.min_margin or 15, args.tokens or 96
    from users.synthetic.personas import population_shape

    try:
        population_shape(args.dimension, args.side_weight)
    except ValueError as exc:
        ap.error(str(exc))
    return args


def population_options(args: argparse.Namespace) -> dict:
    """What ``population_synthesize`` (and ``sample_population``) are given besides the size and the seed."""
    return {"dimension": args.dimension, "side_weight": args.side_weight, "majority_share": MAJORITY_SHARE}


def main(argv=None) -> list[Figure]:
    args = parse_args(argv)
    root = args.keep or workdir("personalize-")
    root.mkdir(parents=True, exist_ok=True)
    setup_django(root, ARTIFACTS_DIR=str(root / "artifacts"), BASE_MODEL=args.model)
    from django.contrib.auth import get_user_model

    from trainer import services
    from trainer.core.hardware import describe_cpu
    from trainer.management.commands.evaluate_version import render_report
    from trainer.models import PersonalEvaluation, TrainingRun
    from trainer.personalization import report
    from trainer.personalization import services as evaluation_services
    from trainer.worker import personalization, training
    from users.synthetic.personas import population_shape
    from users.synthetic.population import population_synthesize

    # This process is the worker: nothing is put on a queue.
    services.run_enqueue = lambda *, run_id: True
    evaluation_services.evaluation_enqueue = lambda *, evaluation_id: True
    print(describe_cpu(), flush=True)
    started = time.perf_counter()
    made = population_synthesize(population="bench", n_people=args.people, conversations_per_person=args.conversations,
                                 turns_per_conversation=1, seed=0, **population_options(args))
    contested, side_weight = population_shape(args.dimension, args.side_weight)
    staff = get_user_model().objects.create_user("bench-staff", is_staff=True)
    config, data = run_settings(args)
    if args.plan:
        print(f"settings: {config}\ndata filter: {data}", flush=True)
        return []
    first = services.run_create(created_by=staff, name=f"{args.dimension} P-DPO", config=config, data_filter=data,
                                with_baseline=True, check_fit=False, repeats=args.seeds)
    steps = TrainingRun.objects.get(pk=first.pk).total_steps or config.get("max_steps") or "the form's"
    print(f"{made.people} people ({args.dimension}: {contested} contested, side weight {side_weight}, 70 % / 30 %), "
          f"{made.conversations} rated conversations; {args.settings} settings; "
          f"{args.seeds} seeds x (P-DPO + plain DPO), {steps} steps of {config['batch_size']} pairs each; "
          f"pairs with a score margin of {data['min_margin']} or more; evaluated on {args.prompts_per_person} "
          f"held-out prompts per person, {config.get('eval_max_new_tokens', args.tokens)} new tokens", flush=True)
    overrides = {"prompts_per_person": args.prompts_per_person}
    if args.tokens:
        overrides["max_new_tokens"] = args.tokens
    evaluation_services.DEFAULTS.update(overrides)  # what the evaluation started after each pair of runs uses
    for run in report.series_of(first):
        for one in (run, run.baseline):
            took = time.perf_counter()
            status = training.execute(one.pk)
            one.refresh_from_db()
            print(f"run {one.pk} ({one}): {status} in {time.perf_counter() - took:.0f} s; held-out accuracy "
                  f"{(one.evaluation or {}).get('accuracy')}; {one.error}", flush=True)
        evaluation = PersonalEvaluation.objects.filter(run=run).first()  # started when both completed
        if evaluation is None:
            raise SystemExit(f"run {run.pk} and its baseline did not both complete: no evaluation started")
        took = time.perf_counter()
        personalization.execute(evaluation.pk)
        evaluation.refresh_from_db()
        print(f"evaluation {evaluation.pk}: {evaluation.status} in {time.perf_counter() - took:.0f} s "
              f"({evaluation.done} replies) {evaluation.error}", flush=True)
    found = report.personalization_report(TrainingRun.objects.get(pk=first.pk))
    print("\n" + render_report(found), flush=True)
    print(f"\nall in {(time.perf_counter() - started) / 60:.0f} min", flush=True)
    return figures_of(found, args.dimension)


def run_settings(args) -> tuple[dict, dict]:
    """The run's settings and data filter: the start form's, as it opens on this data with nothing typed in
    (``--settings form``), or the hand-tuned ones; ``--steps``, ``--min-margin`` and ``--tokens`` override."""
    from trainer.core.hardware import precision_for
    from trainer.core.presets import preset_values
    from trainer.data_defaults import form_choices
    from trainer.forms import RunForm

    bf16 = precision_for("auto") == "bf16"
    if args.settings == "tuned":
        return ({**SETTINGS, "max_steps": args.steps, "seed": 0, "bf16": bf16},
                {"min_pairs": 1, "min_margin": args.min_margin, "unseen_fraction": 0.0, "test_fraction": 0.25})
    values = {**preset_values("cpu"), "seed": 0, "bf16": bf16, "log_every": 5, "checkpoint_every": 0,
              "diagnostics_every": 0}
    data = RunForm.initial_data_filter()
    chosen = form_choices(values, data)
    print("the start form's choices, read off the data:\n" + "\n".join(chosen.lines()), flush=True)
    config = {**values, **{k: v for k, v in chosen.values.items() if k != "min_margin"}}
    data["min_margin"] = args.min_margin or chosen.values.get("min_margin", data.get("min_margin", 1))
    if args.steps:
        config.pop("epochs", None)
        config["max_steps"] = args.steps
    return config, data


def figures_of(found: dict | None, dimension: str) -> list[Figure]:
    if found is None:
        return [Figure("personalize", f"{dimension}: the report", "no completed evaluation", "a report", False)]
    figures = []
    accuracy = {row["name"]: row for row in found["accuracy"]["rows"]}
    groups = sorted(found["groups"], key=lambda g: -g["share"])
    for rank, group in enumerate(groups):
        majority = rank == 0
        row = accuracy.get(f"group {group['name']}") or {}
        own, plain = row.get("own"), row.get("baseline")
        figures.append(Figure(
            "personalize", f"{dimension}: {group['name']} ({group['share']:.0%}): held-out pair accuracy, P-DPO "
                           f"(plain DPO)",
            f"{own['accuracy']:.1%} ({plain['accuracy']:.1%}), n={own['n']}" if own and plain else "-",
            ">= 90 %", bool(own and own["accuracy"] >= 0.9)))
        rate = group["vs"]["baseline"]
        target = 0.5 if majority else 0.7
        figures.append(Figure(
            "personalize", f"{dimension}: {group['name']} ({group['share']:.0%}): own vectors' replies preferred "
                           "over plain DPO's",
            f"{rate['rate']:.1%} [{rate['low'] * 100:.0f}, {rate['high'] * 100:.0f}], n={rate['n']}" if rate["n"]
            else "-", f">= {target:.0%}", bool(rate["n"] and rate["rate"] >= target)))
    return figures


if __name__ == "__main__":
    import sys

    from bench.figures import table

    print(table(main(sys.argv[1:])))
