"""The researcher's commands (train, evaluate, fit_user, generate) on PRISM-format files, on the tiny model."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command, load_command_class

from tests.services import wait_until
from trainer.core.commands import read_groups
from trainer.core.config import TrainConfig
from trainer.core.presets import COMMAND_LINE, UsageError, build_config, preset_for_device

REPO = Path(__file__).resolve().parents[2]
TINY = ["--set", "micro_batch_size=4", "--set", "n_user_tokens=4"]  # the tiny model: steps well under a second


@pytest.fixture
def prism_people(db, tmp_path):
    """Eight simulated people who disagree on length, as PRISM files, imported."""
    folder = tmp_path / "prism"
    call_command("make_prism_files", str(folder), "--dimension", "length", "--people", "8",
                 "--conversations-per-person", "6", "--seed", "41")
    call_command("import_prism", str(folder))
    return folder


def test_rated_prism_files_follow_each_persons_hidden_rule(prism_people):
    from users.synthetic.rule import features

    groups = read_groups(prism_people / "hidden_groups.jsonl")
    assert sorted(set(groups.values())) == ["length:concise", "length:detailed"] and len(groups) == 8
    turns = {}
    for line in (prism_people / "utterances.jsonl").read_text().splitlines():
        u = json.loads(line)
        turns.setdefault(u["interaction_id"], []).append(u)
    agree = []
    for replies in turns.values():
        best = max(replies, key=lambda u: u["score"])
        wants_detail = groups[best["user_id"]] == "length:detailed"
        # Two of the four candidates are written at each pole of length: the best is one of the preferred two.
        by_length = sorted(replies, key=lambda u: features(u["model_response"])["length"])
        agree.append(best in (by_length[2:] if wants_detail else by_length[:2]))
    assert len(agree) == 48 and sum(agree) / len(agree) >= 0.95


def test_train_evaluate_fit_and_generate_on_imported_people(prism_people, tmp_path, tiny_model_path, capsys):
    run, plain = tmp_path / "runs" / "p-dpo", tmp_path / "runs" / "dpo"
    call_command("train", "--model", str(tiny_model_path), "--out", str(run), "--steps", "4",
                 "--unseen-fraction", "0.25", *TINY)
    out, err = capsys.readouterr()
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert config["max_steps"] == 4 and config["lr_lora"] == 1e-3 and config["checkpoint_every"] == 10
    assert [h["step"] for h in metrics["history"]] == [1, 2, 3, 4]
    assert metrics["settings"]["preset"] == "cpu" and metrics["settings"]["model_path"] == str(tiny_model_path)
    unseen = metrics["split"]["unseen_user_ids"]
    assert len(unseen) == 2 and f"held out as unseen: {', '.join(unseen)}" in out
    assert "loading the model: done in" in err and "tokenising: 100%" in err and "training: 100%" in err
    assert f"Wrote {run}/" in out and (run / "heldout.jsonl").is_file()
    assert not (tmp_path / "runs" / "p-dpo-checkpoints").exists()  # the finished run supersedes them

    call_command("train", "--model", str(tiny_model_path), "--out", str(plain), "--steps", "4", "--plain",
                 "--unseen-fraction", "0.25", *TINY)
    assert json.loads((plain / "config.json").read_text())["user_model"] == "none"
    capsys.readouterr()
    call_command("evaluate", "--run", str(run), "--baseline", str(plain), "--groups",
                 str(prism_people / "hidden_groups.jsonl"), "--per-person")
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("model"))
    assert "length:concise" in header and "length:detailed" in header
    assert "run (individual user model, dpo)" in out and "baseline (none user model, dpo)" in out
    assert f"{unseen[0]}" in out and "seen=False" in out  # the unseen people's held-out pairs are in the table

    newcomer = unseen[0]
    username = f"prism-{newcomer}"  # the imported person's account: the command finds their exported id
    call_command("fit_user", "--run", str(run), "--user", username, "--max-pairs", "5")
    out = capsys.readouterr().out
    before, after = map(float, re.search(r"loss ([\d.]+) -> ([\d.]+)", out).groups())
    assert after < before and "accuracy on their other" in out
    vectors = run / "vectors" / f"{newcomer}.safetensors"
    assert f"Wrote {vectors}" in out and vectors.is_file()

    call_command("generate", "--run", str(run), "--user", newcomer, "--prompt", "Hello", "--max-new-tokens", "6")
    with pytest.raises(CommandError, match="has no vectors in .*fit them first"):
        call_command("generate", "--run", str(run), "--user", "nobody", "--prompt", "Hello")
    with pytest.raises(CommandError, match="not a survey answer; use one of age, "):
        call_command("evaluate", "--run", str(run), "--group-by", "shoe_size")
    capsys.readouterr()
    call_command("evaluate", "--run", str(run), "--group-by", "lm_familiarity")  # a survey answer of each person
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("model"))
    assert re.search(r"(Very|Somewhat|Not) familiar", header)


def test_base_and_generic_replies_differ_from_a_persons_on_a_trained_run(prism_people, tmp_path, tiny_model_path,
                                                                           capsys):
    from trainer.core.commands import generate_command

    run = tmp_path / "run"
    call_command("train", "--model", str(tiny_model_path), "--out", str(run), "--steps", "3", "--unseen-fraction",
                 "0", "--set", "lr_lora=0.05", "--set", "lr_user=0.5", *TINY)
    person = json.loads((run / "users.json").read_text())["users"]
    someone = next(iter(person))
    prompt = [{"role": "user", "content": "Tell me about rivers."}]
    texts = {v: generate_command(run, prompt, user_id=someone, vectors=v, max_new_tokens=12)
             for v in ("own", "generic", "base")}
    assert texts["base"] != texts["own"] or texts["base"] != texts["generic"]


def test_model_bundled_resolves_to_the_converted_folder_and_a_bad_one_is_explained(db, bundled_model_path,
                                                                                    tmp_path):
    from trainer.core.cli import locate_model

    data_dir = bundled_model_path.parent.parent
    assert locate_model("bundled", data=data_dir) == str(bundled_model_path)
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(UsageError, match="folder without config.json: not a transformers model"):
        locate_model(str(tmp_path / "notamodel"), data=data_dir)


def test_unknown_settings_are_refused_with_the_valid_names(db, tmp_path, tiny_model_path):
    (tmp_path / "pairs.jsonl").write_text("")
    with pytest.raises(CommandError, match=r"--set 'lr=1': expected NAME=VALUE with NAME one of: user_model, loss"):
        call_command("train", "--model", str(tiny_model_path), "--pairs", str(tmp_path / "pairs.jsonl"),
                     "--out", str(tmp_path / "run"), "--set", "lr=1")
    with pytest.raises(CommandError, match="do not go together: batch_size must be a multiple of micro_batch_size"):
        call_command("train", "--model", str(tiny_model_path), "--pairs", str(tmp_path / "pairs.jsonl"),
                     "--out", str(tmp_path / "run"), "--set", "micro_batch_size=3")


def test_help_lists_every_setting_with_its_default_and_meaning():
    from dataclasses import fields

    text = load_command_class("trainer", "train").create_parser("manage.py", "train").format_help()
    for f in fields(TrainConfig):
        assert re.search(rf"^  {f.name}=.*\n      \S", text, re.M), f.name
    assert "lr_user=5e-05 (cpu: 0.05)\n      learning rate of the user model" in text
    assert "--preset {auto,paper,cpu}" in text and "--steps STEPS" in text and "--threads THREADS" in text


def test_presets_follow_the_device():
    assert preset_for_device("cpu") == "cpu" and preset_for_device("cuda:1") == "paper"
    paper = build_config(preset="paper")
    assert paper == TrainConfig(**COMMAND_LINE)  # the paper's settings are the dataclass defaults
    cpu = build_config(preset="cpu", sets=["lr_user=0.1"], steps=7)
    assert (cpu.micro_batch_size, cpu.max_length, cpu.lr_user, cpu.max_steps) == (2, 512, 0.1, 7)
    assert cpu.total_steps(10_000) == 7 and paper.total_steps(100) == 4
    with pytest.raises(UsageError, match="unknown preset 'gpu'"):
        build_config(preset="gpu")


def test_groups_files_in_jsonl_or_csv_and_a_bad_line_named(tmp_path):
    (tmp_path / "g.jsonl").write_text('{"user_id": "a", "group": "x"}\n\n{"user_id": "b", "group": "y"}\n')
    (tmp_path / "g.csv").write_text("user_id,group\na,x\nb,y\n")
    assert read_groups(tmp_path / "g.jsonl") == read_groups(tmp_path / "g.csv") == {"a": "x", "b": "y"}
    (tmp_path / "bad.jsonl").write_text('{"user_id": "a", "group": "x"}\n{"user": "b"}\n')
    with pytest.raises(UsageError, match=r"bad.jsonl:2: expected a JSON object with user_id and group"):
        read_groups(tmp_path / "bad.jsonl")


@pytest.mark.slow
def test_a_killed_training_resumes_from_its_checkpoint(tmp_path, tiny_model_path):
    from tests.core.conftest import small_pairs
    from trainer.core.checkpoint import latest_checkpoint
    from trainer.core.data import write_pairs

    write_pairs(tmp_path / "pairs.jsonl", small_pairs(n_users=3, per_user=8))
    out = tmp_path / "run"
    command = [sys.executable, "manage.py", "train", "--model", str(tiny_model_path), "--pairs",
               str(tmp_path / "pairs.jsonl"), "--out", str(out), "--steps", "8", "--unseen-fraction", "0",
               "--set", "checkpoint_every=1", "--set", "batch_size=4", *TINY]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    checkpoints = tmp_path / "run-checkpoints"
    try:
        wait_until(lambda: (latest_checkpoint(checkpoints) or Path("step-0")).name >= "step-0000002", timeout=120)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert not out.exists()

    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "pass --resume to continue it or --fresh to start over" in again.stderr

    resumed = subprocess.run([*command, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    step = int(re.search(r"Resumed from \S+ at step (\d+)/8", resumed.stdout).group(1))
    assert step >= 2
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == list(range(1, 9))


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_says_how_to_finish(tmp_path, tiny_model_path):
    from tests.core.conftest import small_pairs
    from trainer.core.data import write_pairs

    write_pairs(tmp_path / "pairs.jsonl", small_pairs(n_users=3, per_user=8))
    command = [sys.executable, "manage.py", "train", "--model", str(tiny_model_path), "--pairs",
               str(tmp_path / "pairs.jsonl"), "--out", str(tmp_path / "run"), "--steps", "400", "--unseen-fraction",
               "0", "--set", "batch_size=4", "--set", "checkpoint_every=0", *TINY]
    proc = subprocess.Popen(command, cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    training = threading.Event()

    def watch(stream) -> None:  # a thread, so a silent process cannot block the test
        seen = ""
        while chunk := stream.read(1):
            seen = (seen + chunk)[-200:]
            if "training:" in seen:
                training.set()

    watcher = threading.Thread(target=watch, args=(proc.stderr,), daemon=True)
    watcher.start()
    try:
        assert training.wait(timeout=120), "the command never reached training"
        time.sleep(2)  # a few micro-batches in, so there is a step to checkpoint
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)  # its stdout is a few lines: the pipe cannot fill before it exits
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    match = re.search(r"Stopped at step (\d+)/400; the checkpoint is in (\S+)\. Run the same command with --resume",
                      out)
    assert match and 0 <= int(match.group(1)) < 400  # Ctrl-C is honoured between micro-batches, too
    assert list(Path(match.group(2)).glob("step-*"))


def test_the_command_line_reports_each_logged_step_to_tensorboard_when_asked(prism_people, tmp_path, tiny_model_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    call_command("train", "--model", str(tiny_model_path), "--out", str(run), "--steps", "3", "--report-to",
                 "tensorboard", "--set", "log_every=1", *TINY)
    history = json.loads((run / "metrics.json").read_text())["history"]
    board = EventAccumulator(str(tmp_path / "tracking" / "tensorboard" / "run"))  # tracking/ beside --out
    board.Reload()
    assert [(e.step, round(e.value, 5)) for e in board.Scalars("train/loss")] == [
        (h["step"], round(h["loss"], 5)) for h in history]
    assert "eval/seen/accuracy" in board.Tags()["scalars"]
