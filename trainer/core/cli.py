"""Command line without Django: the same verbs as ``python manage.py train|evaluate|fit_user|generate``, on files.

    python -m trainer.core.cli train --pairs pairs.jsonl --model bundled --out runs/r1 [--steps 40] [--set NAME=VALUE]
    python -m trainer.core.cli evaluate --run runs/r1 [--baseline runs/r0] [--pairs test.jsonl] [--groups groups.jsonl]
    python -m trainer.core.cli fit_user --run runs/r1 --pairs new.jsonl --user someone [--max-pairs 10]
    python -m trainer.core.cli generate --run runs/r1 --user someone --prompt "How do I start running?"

This is what ``accelerate launch -m trainer.core.cli train ...`` runs on several
processes (each trains its slice; process 0 evaluates and saves). The argument
definitions live here once; the management commands add the database to them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from trainer.core.commands import (
    evaluate_command,
    fit_user_command,
    generate_command,
    read_groups,
    set_threads,
    train_command,
)
from trainer.core.config import plain_dpo
from trainer.core.presets import PRESETS, UsageError, build_config, parse_sets, preset_name, settings_help


def _model_help(default: str | None) -> str:
    return ("base model: bundled (SmolLM2-135M-Instruct, converted on first use), a transformers folder or a "
            f"Hugging Face id{f'; default {default}' if default else ''}")


def add_train_arguments(parser, *, model_default: str | None = None, pairs_required: bool = True) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "settings for --set (default, and the cpu preset's value where it differs):\n" + settings_help()
    parser.add_argument("--pairs", required=pairs_required, type=Path,
                        help="preference pairs as JSONL (what export_pairs writes)")
    parser.add_argument("--model", default=model_default, required=model_default is None,
                        help=_model_help(model_default))
    parser.add_argument("--out", required=True, type=Path, help="folder for the finished run (replaced atomically); "
                                                                 "checkpoints go to OUT-checkpoints")
    parser.add_argument("--preset", choices=["auto", *PRESETS], default="auto",
                        help="starting settings: cpu (sized for a CPU: batch 8, micro-batch 2, 512 tokens, "
                             "learning rates 1e-3 / 5e-2), paper (the paper's GPU settings); auto: cpu without "
                             "a GPU, paper with one, then the margin filter, epochs, learning rates, user model "
                             "and evaluation budget read off the training pairs (printed with their reasons; "
                             "--set, --steps or --min-margin fixes one)")
    parser.add_argument("--min-margin", type=int, default=None,
                        help="drop pairs whose two scores differ by less (default with --preset auto: read off the "
                             "training pairs' margins; otherwise 1, every pair)")
    parser.add_argument("--plain", action="store_true",
                        help="plain DPO (no user model): the baseline to compare a P-DPO run with")
    parser.add_argument("--steps", type=int, help="optimizer steps to train (instead of --set epochs=...)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--report-to", default=os.environ.get("REPORT_TO", ""), metavar="TRACKERS",
                        help="also send the metrics to tensorboard, mlflow and/or trackio (comma-separated; default "
                             "REPORT_TO, else none), stored under TRACKING_DIR (default: tracking/ beside --out)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="any setting listed below; repeatable")
    parser.add_argument("--unseen-fraction", type=float, default=0.1,
                        help="share of people held out entirely (evaluated with the generic vectors)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of each other person's conversations held out")
    parser.add_argument("--resume", action="store_true", help="continue from OUT-checkpoints")
    parser.add_argument("--fresh", action="store_true", help="delete OUT-checkpoints and start over")


def add_evaluate_arguments(parser, *, model_default: str | None = None) -> None:
    parser.add_argument("--run", required=True, type=Path, help="a run folder written by train")
    parser.add_argument("--baseline", type=Path, help="a second run to compare with on the same pairs (plain DPO)")
    parser.add_argument("--pairs", type=Path, help="pairs to evaluate on (default: the run's held-out pairs)")
    parser.add_argument("--group-by", metavar="FIELD", help="report per value of this field of the pairs "
                                                            "(default: their 'group' field, when they have one)")
    parser.add_argument("--groups", type=Path, help="JSONL ({user_id, group} per line) or CSV (user_id,group) "
                                                    "naming each person's group")
    parser.add_argument("--per-person", action="store_true", help="also one line per person")
    parser.add_argument("--model", default=None, help=_model_help(model_default) + " (default: the run's own)")


def add_fit_user_arguments(parser, *, pairs_required: bool = True, model_default: str | None = None) -> None:
    parser.add_argument("--run", required=True, type=Path, help="a P-DPO run folder written by train")
    parser.add_argument("--user", required=True, help="the person's user_id, as in the pairs")
    parser.add_argument("--pairs", required=pairs_required, type=Path, help="JSONL pairs holding theirs")
    parser.add_argument("--max-pairs", type=int, default=10, help="fit on their first N pairs; the rest test it")
    parser.add_argument("--model", default=None, help=_model_help(model_default) + " (default: the run's own)")


def add_generate_arguments(parser, *, model_default: str | None = None) -> None:
    parser.add_argument("--run", required=True, type=Path, help="a run folder written by train")
    whose = parser.add_mutually_exclusive_group()
    whose.add_argument("--user", help="a person: their fitted vectors (fit_user), else their trained ones")
    whose.add_argument("--generic", action="store_true", help="the generic vectors (someone the model never saw)")
    whose.add_argument("--base", action="store_true", help="the base model: no LoRA, no vectors")
    said = parser.add_mutually_exclusive_group(required=True)
    said.add_argument("--prompt", help="one user message")
    said.add_argument("--messages", type=Path, help="a JSON list of chat messages ({role, content})")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help=_model_help(model_default) + " (default: the run's own)")


# --- from parsed arguments to the commands ---------------------------------------------------------------

def data_dir() -> Path:
    return Path(os.environ.get("DATA_DIR") or Path(__file__).resolve().parents[2] / "data")


def locate_model(name: str | None, *, data: Path | None = None, say=print) -> str | None:
    """A --model value as a loadable path; plain errors for what cannot be loaded."""
    from trainer.core.provision import ProvisionError, locate

    if name is None:
        return None
    try:
        return locate(name, data or data_dir(), log=say)
    except ProvisionError as exc:
        raise UsageError(str(exc)) from None


def train_from(options: dict, pairs, *, model_path: str, say=print) -> Path | None:
    from trainer.core.data import split_settings
    from trainer.core.defaults import choose_for_pairs, with_margin

    set_threads(options.get("threads"))
    config = build_config(preset=options["preset"], sets=options["set"], steps=options.get("steps"))
    if options.get("report_to") and "report_to" not in parse_sets(options["set"]):
        config = dataclasses.replace(config, report_to=options["report_to"])
    if options.get("plain"):
        config = plain_dpo(config)
    # --min-pairs is a database filter (manage.py train): applied again after the margin filter, as the worker does.
    min_pairs = 1 if options.get("pairs") else int(options.get("min_pairs") or 1)
    margin, reasons = options.get("min_margin"), {}
    if options["preset"] == "auto":  # the start form's rules, on the pairs given
        given = parse_sets(options["set"]) | ({"max_steps": config.max_steps} if options.get("steps") else {})
        if margin is not None:
            given["min_margin"] = margin
        split = split_settings({"unseen_fraction": options["unseen_fraction"],
                                "test_fraction": options["test_fraction"]}, config.seed)
        chosen = choose_for_pairs(pairs, split=split, batch_size=config.batch_size, model_path=model_path,
                                  min_pairs=min_pairs, given=given, personalized=config.personalized)
        margin = chosen.values.get("min_margin", margin)
        config = dataclasses.replace(config, **{k: v for k, v in chosen.values.items() if k != "min_margin"})
        reasons = chosen.reasons
        if reasons:
            say(f"Read off the {chosen.train_pairs} training pairs of {chosen.people} people (--set, --steps or "
                f"--min-margin fixes one):")
            for line in chosen.lines():
                say(line)
    margin = margin or 1
    kept = with_margin(pairs, margin, min_pairs)
    if len(kept) < len(pairs):
        say(f"{len(pairs) - len(kept)} of {len(pairs)} pairs left out by the margin filter ({margin})")
    pairs = kept
    record = {"preset": preset_name(options["preset"], config), "threads": options.get("threads"),
              "model": options["model"], "model_path": model_path, "plain": bool(options.get("plain")),
              "min_margin": margin, "read_off_data": reasons}
    return train_command(config, model_path, pairs, options["out"], unseen_fraction=options["unseen_fraction"],
                         test_fraction=options["test_fraction"], resume=options["resume"], fresh=options["fresh"],
                         settings_record=record, say=say)


def evaluate_from(options: dict, pairs, *, model_path: str | None, group_of=None, say=print) -> dict:
    runs = {"run": options["run"]}
    if options.get("baseline"):
        runs["baseline"] = options["baseline"]
    if group_of is None:
        group_of = group_lookup(options)
    return evaluate_command(runs, pairs, model_path=model_path, group_of=group_of,
                            per_person=options["per_person"], say=say)


def group_lookup(options: dict):
    """The pair -> group function the options ask for (None: the pairs' own 'group' field)."""
    if options.get("groups"):
        groups = read_groups(options["groups"])
        return lambda p: groups.get(p.user_id)
    if options.get("group_by"):
        field = options["group_by"]
        return lambda p: p.extra.get(field)
    return None


def messages_from(options: dict) -> list[dict]:
    if options.get("prompt"):
        return [{"role": "user", "content": options["prompt"]}]
    try:
        messages = json.loads(Path(options["messages"]).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"--messages {options['messages']}: {exc}") from None
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "content" in m for m in messages):
        raise UsageError("--messages must hold a JSON list of {\"role\", \"content\"} objects")
    return messages


def generate_from(options: dict, *, model_path: str | None, user_id: str | None, write) -> str:
    vectors = "base" if options.get("base") else "generic" if options.get("generic") else "own"
    text = generate_command(options["run"], messages_from(options), user_id=user_id, vectors=vectors,
                            model_path=model_path, max_new_tokens=options["max_new_tokens"],
                            temperature=options["temperature"], seed=options["seed"], write=write)
    write("\n")
    return text


def main(argv: list[str] | None = None) -> int:
    from trainer.core.data import DataError, read_pairs
    from trainer.core.loop import TrainingError

    parser = argparse.ArgumentParser(prog="python -m trainer.core.cli", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(sub.add_parser("train", help="train P-DPO (or plain DPO with --plain) on pairs"))
    add_evaluate_arguments(sub.add_parser("evaluate", help="pair accuracy of a run, per group and person"))
    add_fit_user_arguments(sub.add_parser("fit_user", help="fit one person's vectors from their pairs"))
    add_generate_arguments(sub.add_parser("generate", help="a reply from a run, for a person or generic"))
    args = vars(parser.parse_args(argv))
    try:
        if args["command"] == "train":
            train_from(args, read_pairs(args["pairs"]), model_path=locate_model(args["model"]))
        elif args["command"] == "evaluate":
            pairs = read_pairs(args["pairs"]) if args["pairs"] else None
            evaluate_from(args, pairs, model_path=locate_model(args["model"]))
        elif args["command"] == "fit_user":
            fit_user_command(args["run"], args["user"], read_pairs(args["pairs"]), max_pairs=args["max_pairs"],
                             model_path=locate_model(args["model"]))
        else:
            generate_from(args, model_path=locate_model(args["model"]), user_id=args["user"],
                          write=lambda t: print(t, end="", flush=True))
    except (UsageError, DataError, TrainingError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
