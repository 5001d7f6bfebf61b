"""Training speed, side by side in one process on the same pairs, model and settings.

    python -m bench train_speed [--model PATH] --pairs 32 --epochs 2

1. our plain-DPO path (reference log-probs computed once per pair and cached,
   vocabulary projection on reply tokens only),
2. TRL's DPOTrainer with the same LoRA settings, batch, beta, learning rate and
   max length (only when ``trl`` is installed: it is a benchmark-only
   dependency), as it comes and with its own ``precompute_ref_log_probs``,
3. our P-DPO (individual user model, alpha 0.5): cost per pair relative to plain DPO.

Each optimizer step is timed with the trainers' own step callbacks. The first
step of each run is left out (torch's first-call warm-up, and our model load);
the figure is the mean of the other steps, so reference passes in the first
epoch and their absence in the second both count. Whole-run seconds are printed
too: ours from ``train()`` (model load and tokenising included), TRL's from
``trainer.train()`` (its tokenising and model load happen before).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

import torch

from bench.figures import Figure, default_model
from trainer.core.config import TrainConfig, plain_dpo
from trainer.core.loop import train
from users.synthetic.pairs import make_pairs
from users.synthetic.personas import sample_population
from users.synthetic.prompts import PRISM_PROMPTS, SHORT_SYSTEM, prompts_or_default


def steady(stamps: list[float]) -> float:
    """Mean seconds per step after the first: stamps[0] is the start, stamps[k] the end of step k."""
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    return statistics.mean(steps[1:]) if len(steps) > 1 else steps[0]


def run_ours(model_path: str, pairs, config: TrainConfig) -> tuple[float, float]:
    """(steady seconds per step, whole train() seconds)."""
    stamps = [time.perf_counter()]
    train(config, model_path, pairs, log=lambda *_: None, progress=lambda *_: stamps.append(time.perf_counter()))
    return steady(stamps), stamps[-1] - stamps[0]


def run_trl(model_path: str, pairs, config: TrainConfig, *, precompute: bool) -> tuple[float, float]:
    """(steady seconds per step, trainer.train() seconds) for DPOTrainer with matching settings."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if not stamps:  # after any precompute pass: that one is in the whole-run figure
                stamps.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    data = Dataset.from_list([{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs])
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(output_dir=out, per_device_train_batch_size=config.micro_batch_size,
                         gradient_accumulation_steps=config.batch_size // config.micro_batch_size,
                         learning_rate=config.lr_lora, beta=config.beta, max_length=config.max_length,
                         num_train_epochs=config.epochs, lr_scheduler_type="cosine", warmup_steps=0,
                         logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                         bf16=bool(config.bf16), seed=config.seed, max_grad_norm=config.max_grad_norm,
                         dataloader_num_workers=0, gradient_checkpointing=False,  # ours does not recompute either
                         precompute_ref_log_probs=precompute)
        peft = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=config.lora_target_modules, task_type="CAUSAL_LM")
        trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                             peft_config=peft, callbacks=[Stamp()])
        start = time.perf_counter()
        trainer.train()
        return steady(stamps), time.perf_counter() - start


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a transformers folder or hub id (default: the bundled SmolLM2)")
    ap.add_argument("--prompts", default=str(PRISM_PROMPTS))
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--skip-trl", action="store_true")
    args = ap.parse_args(argv)
    args.model = args.model or default_model()
    prompts = prompts_or_default(args.prompts)
    people = sample_population(8, seed=0)
    pairs = make_pairs(people, prompts, conversations_per_user=args.pairs, seed=1, system=SHORT_SYSTEM,
                       detailed_sentences=(2, 2))[: args.pairs]
    config = TrainConfig(batch_size=8, micro_batch_size=4, epochs=args.epochs, warmup_steps=0, log_every=1000,
                         bf16=args.precision == "bf16")
    steps = int(len(pairs) * args.epochs // config.batch_size)
    print(f"model {args.model}; {len(pairs)} pairs x {args.epochs:g} epochs = {steps} steps of {config.batch_size} "
          f"(micro {config.micro_batch_size}), LoRA r{config.lora_r}/alpha {config.lora_alpha} on "
          f"{','.join(config.lora_target_modules)}, dropout {config.lora_dropout}, {args.precision} CPU, "
          f"{torch.get_num_threads()} threads", flush=True)
    results = {}
    runs = [("ours: plain DPO", lambda: run_ours(args.model, pairs, plain_dpo(config)))]
    if not args.skip_trl:
        runs += [("TRL DPOTrainer", lambda: run_trl(args.model, pairs, plain_dpo(config), precompute=False)),
                 ("TRL DPOTrainer, precompute_ref_log_probs", lambda: run_trl(args.model, pairs, plain_dpo(config),
                                                                             precompute=True))]
    runs.append(("ours: P-DPO (individual, alpha 0.5)",
                 lambda: run_ours(args.model, pairs, dataclasses.replace(config, user_model="individual"))))
    for name, go in runs:
        try:
            results[name] = go()
        except ImportError as exc:
            print(f"  {name}: not installed ({exc}); pip install -r requirements-bench.txt to compare")
            continue
        print(f"  {name}: {results[name][0]:.1f} s/step after the first, {results[name][1]:.1f} s in all", flush=True)
    base = results["ours: plain DPO"][0]
    print(f"\n| path | s/step (steps 2-{steps}, mean) | pairs/s | time per pair vs our plain DPO | whole run s |")
    print("|---|---|---|---|---|")
    for name, (per_step, whole) in results.items():
        print(f"| {name} | {per_step:.2f} | {config.batch_size / per_step:.3f} | {per_step / base:.2f}x | "
              f"{whole:.0f} |")
    return [Figure("train_speed", f"{name}: time per pair / ours (plain DPO)",
                   f"{per_step / base:.2f}x ({per_step:.2f} s/step)")
            for name, (per_step, _whole) in results.items() if name != "ours: plain DPO"]
