"""What the command-line verbs do, without Django: train, evaluate, fit one person's vectors, generate.

Two front doors call these: ``python manage.py train|evaluate|fit_user|generate``
(pairs from the database or a file, ``--model bundled`` resolved like
``BASE_MODEL``) and ``python -m trainer.core.cli`` (files only: what
``accelerate launch`` runs). Everything long shows a bar per phase on stderr;
results and the files written go to ``say`` (stdout).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from trainer.core.config import TrainConfig
from trainer.core.data import Pair, read_pairs, write_pairs
from trainer.core.presets import UsageError
from trainer.core.progress import ConsoleProgress

HELD_OUT = "heldout.jsonl"  # a trained run's held-out pairs, what ``evaluate`` uses when given no pairs
VECTORS = "vectors"  # a run's folder of fitted people's vectors, one safetensors file each


def quiet_libraries() -> None:
    """Our bars say what is happening; transformers' own weight-loading bars and deprecation notes do not."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)


def set_threads(threads: int | None) -> None:
    """Torch's CPU threads (on a shared 2-core machine one thread trained 3-5x faster than two)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def settings_lines(config: TrainConfig) -> list[str]:
    """Every setting as NAME=VALUE, a few per line: what the run really uses."""
    items = [f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in config.to_dict().items()]
    return ["  " + "  ".join(items[i:i + 5]) for i in range(0, len(items), 5)]


# --- stopping with Ctrl-C ------------------------------------------------------------------------------

@contextmanager
def interrupt_flag():
    """A callable that says whether Ctrl-C (or SIGTERM) came: the loop then checkpoints and stops."""
    hit = []

    def handler(signum, frame):
        if hit:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        hit.append(signum)

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: no signals to catch
        yield lambda: False
        return
    try:
        yield lambda: bool(hit)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def open_run(run_path: Path, model_path: str | None = None):
    """Load a saved run, on the base model it records unless ``model_path`` is given; plain errors when missing."""
    from trainer.core.artifacts import base_model_here, load_run

    quiet_libraries()
    run_path = Path(run_path)
    if not (run_path / "run.json").is_file():
        raise UsageError(f"{run_path} is not a saved run (no run.json): give the folder `train` wrote")
    model_path = model_path or base_model_here(run_path)
    if model_path is None:
        raise UsageError("The run was trained on a base model folder that is not on this machine: give the base "
                         "model with --model (bundled, a folder or a hub id)")
    return load_run(run_path, base_model=model_path)


# --- train -------------------------------------------------------------------------------------------

def checkpoints_of(out: Path) -> Path:
    return out.with_name(out.name + "-checkpoints")


def train_command(config: TrainConfig, model_path: str, pairs: list[Pair], out: Path, *,
                  unseen_fraction: float, test_fraction: float, resume: bool = False, fresh: bool = False,
                  settings_record: dict | None = None, say: Callable[[str], None] = print,
                  bars: ConsoleProgress | None = None) -> Path | None:
    """Split, train (checkpointing), evaluate on the held-out pairs and save the run folder ``out``."""
    from trainer.core.artifacts import save_run
    from trainer.core.checkpoint import latest_checkpoint
    from trainer.core.data import split_pairs
    from trainer.core.evaluate import comparison_table, evaluate
    from trainer.core.loop import distributed, train

    quiet_libraries()
    bars = bars or ConsoleProgress()
    out = Path(out)
    checkpoints = checkpoints_of(out)
    found = latest_checkpoint(checkpoints)
    if found is not None and not (resume or fresh):
        raise UsageError(f"{checkpoints} holds a checkpoint ({found.name}) of an earlier run: pass --resume to "
                         f"continue it or --fresh to start over.")
    if fresh and checkpoints.exists():
        shutil.rmtree(checkpoints)
    split = split_pairs(pairs, unseen_fraction=unseen_fraction, test_fraction=test_fraction, seed=config.seed)
    rank, _ = distributed()
    talk = say if rank == 0 else (lambda *_: None)
    total = config.total_steps(len(split.train))
    talk(f"{len(pairs)} pairs of {len(split.seen_users) + len(split.unseen_users)} people: "
         f"{len(split.train)} to train on ({len(split.seen_users)} people), {len(split.test_seen)} held out from "
         f"them, {len(split.test_unseen)} of {len(split.unseen_users)} unseen people")
    if split.unseen_users:
        talk(f"held out as unseen: {', '.join(split.unseen_users)}")
    talk(f"{total} optimizer steps of {config.batch_size} pairs; settings:")
    for line in settings_lines(config):
        talk(line)
    if resume and found is None:
        talk(f"--resume: no checkpoint in {checkpoints} yet, so this starts at step 0")

    from trainer.core.tracking import Trackers

    trackers = Trackers.start(config.report_to if rank == 0 else "", name=out.name,
                              params={**dataclasses.asdict(config), **split.summary()},
                              where=Path(os.environ.get("TRACKING_DIR") or out.parent / "tracking"))

    def progress(step: int, steps: int, metrics: dict | None) -> None:
        if metrics:
            bars.postfix(step=f"{step}/{steps}", loss=metrics["loss"], acc=metrics["rewards/accuracies"])
            trackers.log(step, metrics, prefix="train/")

    try:  # the trackers are closed however this ends
        with interrupt_flag() as interrupted:
            result = train(config, model_path, split.train, checkpoint_dir=checkpoints, progress=progress,
                           should_cancel=interrupted, users=split.seen_users, log=talk,
                           on_phase=None if rank else bars)
        bars.close()
        if rank != 0:
            return None
        if result.status == "cancelled":
            talk(f"Stopped at step {result.step}/{result.total_steps}; the checkpoint is in {checkpoints}. "
                 f"Run the same command with --resume to finish it.")
            return None
        device = next(result.model.parameters()).device
        evaluation = {}
        for name, test in (("held-out, seen people", split.test_seen), ("unseen people", split.test_unseen)):
            if test:
                evaluation[name] = evaluate(result.model, result.tokenizer, result.user_index, config, test,
                                            device=device, progress=lambda d, n, name=name: bars(
                                                f"evaluating {name}", d, n))
        for name, outcome in evaluation.items():  # eval/seen/rewards/accuracies, eval/unseen/accuracy, ...
            part = "seen" if name.startswith("held-out") else "unseen"
            trackers.log(result.step, {k.removeprefix("eval/"): v for k, v in outcome.metrics.items()}
                         | {"accuracy": outcome.accuracy}, prefix=f"eval/{part}/")
    finally:
        trackers.finish()
    metrics = {"status": result.status, "split": {**split.summary(), "unseen_user_ids": split.unseen_users},
               "data": result.data, "history": result.history,
               "diagnostics": result.diagnostics, "eval": {k: v.to_dict() for k, v in evaluation.items()},
               "settings": settings_record or {}}
    held_out = split.test_seen + split.test_unseen
    save_run(out, result.model, result.user_index, config, base_model=model_path, metrics=metrics,
             files={HELD_OUT: lambda path: write_pairs(path, held_out)})
    shutil.rmtree(checkpoints, ignore_errors=True)  # the finished run supersedes them
    if evaluation:
        talk("\n" + comparison_table(evaluation))
    talk(f"\nTrained {result.step} steps. Wrote {out}/ (adapter/, config.json, metrics.json, users.json"
         f"{', user_model.safetensors' if config.personalized else ''}, {HELD_OUT}: {len(held_out)} held-out pairs)")
    return out


# --- evaluate ----------------------------------------------------------------------------------------

def read_groups(path: Path) -> dict[str, str]:
    """person -> group from a JSONL file of {"user_id", "group"} lines (or a CSV with those columns)."""
    text = Path(path).read_text(encoding="utf-8")
    groups = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or (n == 1 and line.replace(" ", "").lower().startswith("user_id,")):
            continue
        try:
            row = json.loads(line) if line.lstrip().startswith("{") else dict(zip(("user_id", "group"),
                                                                                  line.split(",", 1)))
            groups[str(row["user_id"]).strip()] = str(row["group"]).strip()
        except (json.JSONDecodeError, KeyError):
            raise UsageError(f"{path}:{n}: expected a JSON object with user_id and group, or a CSV line "
                             "user_id,group") from None
    return groups


def evaluate_command(runs: dict[str, Path], pairs: list[Pair] | None, *, model_path: str | None = None,
                     group_of: Callable[[Pair], str | None] | None = None, per_person: bool = False,
                     say: Callable[[str], None] = print, bars: ConsoleProgress | None = None) -> dict:
    """Pair accuracy of each run (overall, seen/unseen, per group, per person) on the same pairs."""
    from trainer.core.evaluate import comparison_table, evaluate

    bars = bars or ConsoleProgress()
    first = next(iter(runs.values()))
    if pairs is None:
        if not (first / HELD_OUT).is_file():
            raise UsageError(f"{first} has no {HELD_OUT}: give the pairs to evaluate on with --pairs")
        pairs = read_pairs(first / HELD_OUT)
        say(f"Evaluating on the {len(pairs)} held-out pairs saved with {first}")
    if group_of is not None:  # every group looked up now: a bad field fails before minutes of evaluation
        known = {id(p): group_of(p) for p in pairs}
        group_of = lambda p: known.get(id(p))  # noqa: E731
    results = {}
    for label, path in runs.items():
        bars(f"loading {label}", 0, None)
        run = open_run(path, model_path)
        name = f"{label} ({run.config.user_model} user model, {run.config.loss})"
        results[name] = evaluate(run.model, run.tokenizer, run.user_index, run.config, pairs, group_of=group_of,
                                 progress=lambda d, n, label=label: bars(f"evaluating {label}", d, n))
    bars.close()
    say(comparison_table(results))
    if per_person:
        for name, r in results.items():
            say(f"\n{name}")
            for row in sorted(r.per_user, key=lambda row: (str(row["group"]), row["user_id"])):
                say(f"  {row['user_id']:>24}  group={row['group'] or '-':<20} seen={row['seen']!s:5} "
                    f"n={row['n']:4}  accuracy={row['accuracy']:.1%}")
    return {name: r.to_dict() for name, r in results.items()}


# --- fit one person's vectors --------------------------------------------------------------------------

def vectors_path(run: Path, user_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", user_id)
    return Path(run) / VECTORS / f"{safe}.safetensors"


def fit_user_command(run_path: Path, user_id: str, pairs: list[Pair], *, max_pairs: int = 10,
                     model_path: str | None = None, say: Callable[[str], None] = print,
                     bars: ConsoleProgress | None = None) -> Path:
    """Fit ``user_id``'s vectors from their first ``max_pairs`` pairs (LoRA and everyone else frozen), test them
    on the rest, and save them into the run's ``vectors/`` folder."""
    from trainer.core.artifacts import save_vectors
    from trainer.core.evaluate import evaluate
    from trainer.core.fastfit import fast_fit
    from trainer.core.usermodel import UserIndex

    bars = bars or ConsoleProgress()
    mine = [p for p in pairs if p.user_id == user_id]
    if not mine:
        known = sorted({p.user_id for p in pairs})
        raise UsageError(f"No pairs of {user_id!r} among the {len(pairs)} given (people in them: "
                         f"{', '.join(known[:8])}{' ...' if len(known) > 8 else ''})")
    fit_on, test_on = mine[:max_pairs], mine[max_pairs:]
    bars("loading the run", 0, None)
    run = open_run(run_path, model_path)
    bars.close()
    if run.model.user_model is None:
        raise UsageError(f"{run_path} is a plain DPO run: it has no user vectors to fit. Use a P-DPO run.")
    trained_row = run.user_index.row(user_id) if user_id in run.user_index else None
    start = "their vectors from training" if trained_row is not None else "the generic vectors"
    before = evaluate(run.model, run.tokenizer, run.user_index, run.config, test_on) if test_on else None
    index = UserIndex()
    say(f"Fitting {user_id} from {len(fit_on)} pairs, starting at {start}")
    bars("fitting", 0, None)
    report = fast_fit(run.model, run.tokenizer, index, run.config, user_id, fit_on, start_row=trained_row)
    bars.close()
    target = save_vectors(vectors_path(run_path, user_id), run.model, report.row,
                          {"user": user_id, "pairs": str(report.pairs)})
    say(f"loss {report.losses[0]:.3f} -> {report.losses[-1]:.3f} in {report.seconds:.1f} s")
    if test_on:
        # An index where the person's id points at the row the fit appended (placeholders fill the rows before).
        fitted = UserIndex([f"\0row{i}" for i in range(1, report.row)] + [user_id])
        after = evaluate(run.model, run.tokenizer, fitted, run.config, test_on)
        say(f"accuracy on their other {len(test_on)} pairs: {before.accuracy:.1%} with {start}, "
            f"{after.accuracy:.1%} with the fitted vectors")
    say(f"Wrote {target}")
    return target


# --- generate ----------------------------------------------------------------------------------------

def generate_command(run_path: Path, messages: list[dict], *, user_id: str | None = None, vectors: str = "own",
                     model_path: str | None = None, max_new_tokens: int = 200, temperature: float = 0.0,
                     seed: int = 0, write: Callable[[str], None] | None = None) -> str:
    """A reply from a saved run: ``vectors`` is own (a person's fitted or trained vectors), generic, or base
    (the base model: no LoRA, no vectors). Text is written as it is generated."""
    import contextlib

    from safetensors.torch import load_file

    from trainer.core.generation import stream_generate
    from trainer.core.reference import adapter_disabled

    run = open_run(run_path, model_path)
    context, soft = contextlib.nullcontext(), None
    if vectors == "base":
        context = adapter_disabled(run.model.lm)
    elif vectors == "generic" or run.model.user_model is None:
        soft = run.soft_prompt(None)
    else:
        if not user_id:
            raise UsageError("Say whose vectors to use (--user), or ask for --generic or --base")
        fitted = vectors_path(run_path, user_id)
        if fitted.is_file():
            soft = load_file(fitted)["vectors"]
        elif user_id in run.user_index:
            soft = run.soft_prompt(user_id)
        else:
            raise UsageError(f"{user_id!r} has no vectors in {run_path}: fit them first (fit_user), or use "
                             "--generic for the generic vectors")
    pieces = []
    with context:
        for delta in stream_generate(run.model.lm, run.tokenizer, messages, soft_prompt=soft,
                                     max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                                     max_prompt_length=run.config.max_prompt_length):
            pieces.append(delta)
            if write is not None:
                write(delta)
    return "".join(pieces)
