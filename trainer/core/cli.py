"""Command line: train and evaluate without Django.

    python -m trainer.core.cli train --pairs pairs.jsonl --model PATH --out runs/r1 [--set lr_lora=1e-4 ...]
    python -m trainer.core.cli evaluate --run runs/r1 --pairs test.jsonl [--baseline runs/r0]

``train`` splits the pairs (users seen/unseen, then conversations train/test),
trains, evaluates on the held-out pairs, saves the run and prints a report.
Under ``accelerate launch`` (or torchrun) every process trains its slice and
process 0 evaluates and saves.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from trainer.core.config import TrainConfig


def _coerce(field: dataclasses.Field, text: str):
    kind = str(field.type)
    if "list" in kind:
        return [t for t in text.split(",") if t]
    if "bool" in kind:
        if text.lower() in {"1", "true", "yes"}:
            return True
        if text.lower() in {"0", "false", "no"}:
            return False
        if text.lower() == "none" and "None" in kind:
            return None
        raise ValueError(f"{field.name} needs true or false, not {text!r}")
    if "int" in kind and "float" not in kind:
        return int(text)
    if "float" in kind:
        return float(text)
    return text


def config_from_args(settings: list[str]) -> TrainConfig:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values = {}
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set {item!r}: expected NAME=VALUE with NAME one of {', '.join(fields)}")
        try:
            values[key] = _coerce(fields[key], text)
        except ValueError as exc:
            raise SystemExit(f"--set {item!r}: {exc}") from None
    return TrainConfig(**values)


def _print_progress(step: int, total: int, metrics: dict | None) -> None:
    if metrics:
        shown = ", ".join(f"{k}={metrics[k]:.4g}" for k in ("loss", "rewards/accuracies", "rewards/margins",
                                                             "grad_norm", "examples_per_second") if k in metrics)
        print(f"step {step}/{total}: {shown}", flush=True)


def cmd_train(args) -> int:
    from trainer.core.artifacts import save_run
    from trainer.core.data import read_pairs, split_pairs
    from trainer.core.evaluate import comparison_table, evaluate
    from trainer.core.loop import train

    config = config_from_args(args.set)
    pairs = read_pairs(args.pairs)
    split = split_pairs(pairs, unseen_fraction=args.unseen_fraction, test_fraction=args.test_fraction,
                        seed=config.seed)
    out = Path(args.out)
    checkpoints = Path(args.checkpoint_dir) if args.checkpoint_dir else out.with_name(out.name + "-checkpoints")
    result = train(config, args.model, split.train, checkpoint_dir=checkpoints, progress=_print_progress)
    from trainer.core.loop import distributed

    rank, _ = distributed()
    if rank != 0:
        return 0
    device = next(result.model.parameters()).device
    evaluation = {name: evaluate(result.model, result.tokenizer, result.user_index, config, test, device=device)
                  for name, test in (("test_seen", split.test_seen), ("test_unseen", split.test_unseen)) if test}
    metrics = {"status": result.status, "split": split.summary(), "data": result.data, "history": result.history,
               "diagnostics": result.diagnostics, "eval": {k: v.to_dict() for k, v in evaluation.items()}}
    save_run(out, result.model, result.user_index, config, base_model=args.model, metrics=metrics)
    print(f"\n{result.status} after {result.step}/{result.total_steps} steps; saved to {out}")
    print(json.dumps({"split": split.summary(), "data": result.data}, indent=2))
    if evaluation:
        print(comparison_table(evaluation))
    return 0


def cmd_evaluate(args) -> int:
    from trainer.core.artifacts import load_run
    from trainer.core.data import read_pairs
    from trainer.core.evaluate import comparison_table, evaluate

    pairs = read_pairs(args.pairs)
    results = {}
    for label, path in (("run", args.run), ("baseline", args.baseline)):
        if path:
            run = load_run(Path(path), base_model=args.model)
            results[f"{label} ({run.config.user_model}, {run.config.loss})"] = evaluate(
                run.model, run.tokenizer, run.user_index, run.config, pairs)
    print(comparison_table(results))
    if args.per_user:
        for name, r in results.items():
            print(f"\n{name}")
            for row in r.per_user:
                print(f"  {row['user_id']:>16} seen={row['seen']!s:5} n={row['n']:4} acc={row['accuracy']:.1%}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.core.cli", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train P-RLHF (or plain DPO with --set user_model=none)")
    t.add_argument("--pairs", required=True, help="JSONL pairs (the export format)")
    t.add_argument("--model", required=True, help="base model folder or Hugging Face id")
    t.add_argument("--out", required=True, help="folder for the finished run (replaced atomically)")
    t.add_argument("--checkpoint-dir", help="default: OUT-checkpoints; an existing checkpoint is resumed")
    t.add_argument("--unseen-fraction", type=float, default=0.1)
    t.add_argument("--test-fraction", type=float, default=0.2)
    t.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="any TrainConfig field")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("evaluate", help="implicit-reward accuracy of a saved run on pairs")
    e.add_argument("--run", required=True)
    e.add_argument("--pairs", required=True)
    e.add_argument("--baseline", help="a second saved run to compare with (e.g. plain DPO)")
    e.add_argument("--model", help="override the base model path stored in the run")
    e.add_argument("--per-user", action="store_true")
    e.set_defaults(func=cmd_evaluate)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
