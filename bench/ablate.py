"""Which settings serve every group? Ablations on a validation split carved from the training people.

    python -m bench ablate [--dimension two+sides] [--people 20] [--seed 0] [--variants a,b,...]
                           [--max-steps 40] [--out DIR] [--plan]

A population as ``python -m bench personalize`` makes it (``population_synthesize``, 70 % / 30 %), its pairs
as the train worker gathers them, the settings the start form reads off them (the cpu preset, then
``trainer.core.defaults``: margin filter, passes, learning rates), and the run's own seeded split. The
run's held-out conversations (its test split, which the personalization report judges) are set aside and
never looked at: a quarter of each training person's training conversations becomes the validation split,
and each variant trains on the rest with one change to the settings, then ranks the validation pairs by
implicit reward (held-out pair accuracy per hidden group). Every variant sees the same pairs in the same
order and runs the same number of steps (the defaults' passes, at most ``--max-steps``), except ``passes-x2``;
``pairing-all`` trains on every ordered pair of the same training conversations (the validation pairs stay
the same). A variant named ``NAME@+K`` is ``NAME`` trained with the seed plus K: the split and the
validation pairs stay the run's, only the pair order and the initialisation change (how much is noise).

Each finished variant is written to ``DIR/<variant>.json`` at once; a second run with the same ``--out``
skips the finished ones, so a stopped ablation resumes. The table of every finished variant is printed at
the end (and with ``--table`` alone).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

from bench.figures import Figure
from bench.stack import REPO, setup_django
from trainer.core.winrate import wilson

MAJORITY_SHARE = 0.7
VALIDATION_FRACTION = 0.25
MLP = ("gate_proj", "up_proj", "down_proj")

# name -> (what changes, the overrides of TrainConfig; "plain" = the plain-DPO baseline of the same settings)
VARIANTS: dict[str, tuple[str, object]] = {
    "defaults": ("the start form's own choices", {}),
    "plain-dpo": ("plain DPO (one model for everyone)", "plain"),
    "lr-user-x4": ("user vectors' learning rate x4", "lr_user_x4"),
    "alpha-0.8": ("alpha 0.8 (less weight on the generic user's term)", {"alpha": 0.8}),
    "alpha-1.0": ("alpha 1 (no generic term: the adapter learns only through people's own vectors)",
                  {"alpha": 1.0}),
    "cluster": ("the cluster user model (K shared components, mixture logits at lr 1)",
                {"user_model": "cluster", "lr_mixture": 1.0}),
    "lora-mlp": ("LoRA on the MLP layers too (attention + MLP)", "lora_mlp"),
    "passes-x2": ("twice the steps", "steps_x2"),
    "lr-user-half": ("user vectors' learning rate / 2", "lr_user_half"),
    "pairing-all": ("all ordered pairs of each turn above the margin, not best versus rest (same steps)",
                    "pairing_all"),
}
DEFAULT_VARIANTS = "defaults,plain-dpo,lr-user-x4,alpha-0.8,cluster,lora-mlp"


def parts(variant: str) -> tuple[str, int | None]:
    """``NAME@+K`` as (NAME, K); a plain name as (NAME, 0); None for K when it is not a number."""
    name, at, offset = variant.partition("@+")
    return name, (int(offset) if offset.isdigit() else None) if at else 0


def known(variant: str) -> bool:
    name, offset = parts(variant)
    return name in VARIANTS and offset is not None


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dimension", default="two+sides", help="length, format+length or two+sides")
    ap.add_argument("--side-weight", type=float, default=None)
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--conversations", type=int, default=12, help="per person, one rated turn each")
    ap.add_argument("--seed", type=int, default=0, help="the population's, the split's and the runs' seed")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--max-steps", type=int, default=40,
                    help="at most this many optimizer steps per variant (passes-x2: twice)")
    ap.add_argument("--out", type=Path, help="where the database and each variant's result go "
                                             "(default: .cache/bench/ablate-DIMENSION-seedN)")
    ap.add_argument("--plan", action="store_true", help="print the data and the chosen settings; train nothing")
    ap.add_argument("--table", action="store_true", help="print the table of the finished variants; train nothing")
    args = ap.parse_args(argv)
    unknown = [v for v in args.variants.split(",") if not known(v)]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(VARIANTS)}")
    from users.synthetic.personas import population_shape

    try:
        population_shape(args.dimension, args.side_weight)
    except ValueError as exc:
        ap.error(str(exc))
    args.out = args.out or REPO / ".cache" / "bench" / f"ablate-{args.dimension}-seed{args.seed}"
    return args


def variant_config(name: str, base, steps: int):
    """The TrainConfig of variant ``name`` from the defaults' ``base`` and the shared step count."""
    from trainer.core.config import ATTENTION, plain_dpo

    name, offset = parts(name)
    if offset:
        return dataclasses.replace(variant_config(name, base, steps), seed=base.seed + offset)
    change = VARIANTS[name][1]
    config = dataclasses.replace(base, max_steps=steps)
    if change == "plain":
        return plain_dpo(config)
    if change == "lr_user_x4":
        return dataclasses.replace(config, lr_user=base.lr_user * 4)
    if change == "lora_mlp":
        return dataclasses.replace(config, lora_target_modules=[*ATTENTION, *MLP])
    if change == "steps_x2":
        return dataclasses.replace(config, max_steps=2 * steps)
    if change == "lr_user_half":
        return dataclasses.replace(config, lr_user=base.lr_user / 2)
    if change == "pairing_all":  # the pairs change (training_pairs), not the settings
        return config
    return dataclasses.replace(config, **change)


def prepared(args):
    """The population in the database (made once per ``--out``), the pairs, the start form's choices, the run's
    training split and the validation carved from it."""
    from trainer.core.config import TrainConfig
    from trainer.core.data import split_pairs, split_settings
    from trainer.core.hardware import precision_for
    from trainer.core.presets import preset_values
    from trainer.data_defaults import form_choices
    from trainer.forms import RunForm
    from trainer.worker.training import gather_pairs
    from users.models import SyntheticPersona
    from users.synthetic.population import population_synthesize

    if not SyntheticPersona.objects.exists():
        population_synthesize(population="ablate", n_people=args.people, conversations_per_person=args.conversations,
                              turns_per_conversation=1, seed=args.seed, dimension=args.dimension,
                              side_weight=args.side_weight, majority_share=MAJORITY_SHARE)
    values = {**preset_values("cpu"), "seed": args.seed, "bf16": precision_for("auto") == "bf16",
              "log_every": 5, "checkpoint_every": 0, "diagnostics_every": 0}
    data_filter = RunForm.initial_data_filter()
    chosen = form_choices(values, data_filter)
    data_filter["min_margin"] = chosen.values.get("min_margin", data_filter.get("min_margin", 1))
    base = TrainConfig.from_dict({**values, **{k: v for k, v in chosen.values.items() if k != "min_margin"}})
    pairs = gather_pairs(data_filter)
    run_split = split_pairs(pairs, **split_settings(data_filter, base.seed))
    carve = split_pairs(run_split.train, unseen_fraction=0.0, test_fraction=VALIDATION_FRACTION,
                        seed=base.seed + 1000)
    steps = min(args.max_steps, base.total_steps(len(carve.train)))
    return chosen, base, run_split, carve, steps, data_filter


def training_pairs(name: str, carve, data_filter: dict) -> list:
    """What variant ``name`` trains on: the carved training pairs, or for ``pairing-all`` every ordered pair of
    the same conversations."""
    from trainer.worker.training import gather_pairs

    if VARIANTS[parts(name)[0]][1] != "pairing_all":
        return carve.train
    kept = {(p.user_id, p.conversation_id) for p in carve.train}
    return [p for p in gather_pairs({**data_filter, "pairing": "all"}) if (p.user_id, p.conversation_id) in kept]


def per_group(outcome) -> dict:
    return {"all": {"accuracy": outcome.accuracy, "n": outcome.n}, **outcome.groups}


def about(name: str) -> str:
    name, offset = parts(name)
    return VARIANTS[name][0] + (f"; training seed +{offset}" if offset else "")


def train_variant(name: str, config, model: str, carve, train_pairs: list) -> dict:
    from trainer.core.evaluate import evaluate
    from trainer.core.loop import train

    started = time.perf_counter()
    result = train(config, model, train_pairs, progress=lambda s, t, m: m and print(
        f"  [{name}] step {s}/{t} loss {m['loss']:.3f} ({time.perf_counter() - started:.0f} s)", flush=True))
    trained = time.perf_counter() - started
    outcome = evaluate(result.model, result.tokenizer, result.user_index, config, carve.test_seen)
    return {"variant": name, "about": about(name), "train_seconds": round(trained), "pairs": len(train_pairs),
            "steps": config.total_steps(len(train_pairs)), "validation": per_group(outcome),
            "config": {k: v for k, v in config.to_dict().items()
                       if k in ("user_model", "alpha", "lr_lora", "lr_user", "lr_mixture", "lora_target_modules",
                                "max_steps", "n_clusters", "min_margin")}}


def finished(out: Path) -> list[dict]:
    order = {name: i for i, name in enumerate(VARIANTS)}  # the table in VARIANTS' order, repeats after their variant
    found = [json.loads(path.read_text()) for path in out.glob("*.json")]
    return sorted(found, key=lambda row: (order.get(parts(row["variant"])[0], len(order)), row["variant"]))


def render(rows: list[dict], groups: list[str]) -> str:
    def cell(d):
        if not d or d.get("accuracy") is None:
            return "-"
        low, high = wilson(d["accuracy"], d["n"])
        return f"{d['accuracy']:.1%} [{low * 100:.0f}, {high * 100:.0f}] (n={d['n']})"

    lines = ["| variant | what changes | " + " | ".join(groups) + " | all | steps | train s |",
             "|---|---|" + "---|" * len(groups) + "---|---|---|"]
    for row in rows:
        v = row["validation"]
        lines.append(f"| {row['variant']} | {row['about']} | " + " | ".join(cell(v.get(g)) for g in groups)
                     + f" | {cell(v.get('all'))} | {row['steps']} | {row['train_seconds']} |")
    return "\n".join(lines)


def main(argv=None) -> list[Figure]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model = setup_django(args.out, ARTIFACTS_DIR=str(args.out / "artifacts"),
                         BASE_MODEL=os.environ.get("BASE_MODEL", "bundled"))
    from trainer.core.hardware import describe_cpu

    if not args.table:
        chosen, base, run_split, carve, steps, data_filter = prepared(args)
        print(describe_cpu(), flush=True)
        print(f"{len(run_split.seen_users)} seen people; the run's split: {len(run_split.train)} training pairs "
              f"({len(run_split.test_seen)} held out, never used here); validation carved from the training "
              f"people: {len(carve.train)} pairs to train on, {len(carve.test_seen)} to validate on; "
              f"{steps} steps of {base.batch_size} per variant\nthe start form's choices:\n"
              + "\n".join(chosen.lines()), flush=True)
        for name in ([] if args.plan else args.variants.split(",")):
            path = args.out / f"{name}.json"
            if path.is_file():
                print(f"{name}: finished before, kept", flush=True)
                continue
            row = train_variant(name, variant_config(name, base, steps), model, carve,
                                training_pairs(name, carve, data_filter))
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(row, indent=1))
            tmp.replace(path)  # a stop mid-write leaves no half result
            print(f"{name}: {row['validation']}", flush=True)
    rows = finished(args.out)
    groups = sorted({g for r in rows for g in r["validation"] if g != "all"},
                    key=lambda g: -max(r["validation"][g]["n"] for r in rows if g in r["validation"]))
    print("\n" + render(rows, groups), flush=True)
    figures = []
    for row in rows:
        for group in groups:
            d = row["validation"].get(group)
            if d:
                figures.append(Figure("ablate", f"{args.dimension}: {row['variant']}: validation accuracy, {group}",
                                      f"{d['accuracy']:.1%} (n={d['n']})", "", None))
    return figures


if __name__ == "__main__":
    import sys

    from bench.figures import table

    print(table(main(sys.argv[1:])))
