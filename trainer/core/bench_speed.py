"""Training speed, side by side in one process on the same pairs and model.

    python -m trainer.core.bench_speed --model data/models/SmolLM2-135M-Instruct --pairs 16

1. our plain-DPO path (reference log-probs cached, reply-only vocabulary projection),
2. TRL's DPOTrainer with the same LoRA settings, batch, beta and max length
   (only when ``trl`` is installed: it is a benchmark-only dependency),
3. our P-DPO (individual user model, alpha 0.5): cost per pair relative to plain DPO.

Ours is timed over the whole ``train()`` call (model loading, tokenising and
reference pass included); TRL over ``trainer.train()`` only, which favours TRL.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import dataclasses
import tempfile
import time

import torch

from trainer.core.config import TrainConfig, plain_dpo
from trainer.core.loop import train
from trainer.core.synthetic import DEFAULT_PROMPTS, load_prompts, make_pairs, sample_population

SYSTEM = "You are a helpful assistant."


# The 115 real PRISM opening prompts, shipped with the app (users/data, CC-BY-4.0).
PROMPTS = Path(__file__).resolve().parents[2] / "users" / "data" / "opening_prompts.jsonl"

def run_trl(model_path: str, pairs, config: TrainConfig) -> float:
    """Seconds for DPOTrainer.train() on ``pairs`` with matching settings."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    data = Dataset.from_list([{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs])
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(output_dir=out, per_device_train_batch_size=config.micro_batch_size,
                         gradient_accumulation_steps=config.batch_size // config.micro_batch_size,
                         learning_rate=config.lr_lora, beta=config.beta, max_length=config.max_length,
                         num_train_epochs=config.epochs, lr_scheduler_type="cosine", warmup_steps=0,
                         logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=False,
                         seed=config.seed, max_grad_norm=config.max_grad_norm, dataloader_num_workers=0,
                         gradient_checkpointing=False)  # ours does not recompute activations either
        peft = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=config.lora_target_modules, task_type="CAUSAL_LM")
        trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                             peft_config=peft)
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="data/models/SmolLM2-135M-Instruct")
    ap.add_argument("--prompts", default=str(PROMPTS))
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--skip-trl", action="store_true")
    args = ap.parse_args(argv)
    try:
        prompts = load_prompts(args.prompts)
    except OSError:
        prompts = DEFAULT_PROMPTS
    people = sample_population(8, seed=0)
    pairs = make_pairs(people, prompts, conversations_per_user=args.pairs, seed=1, system=SYSTEM,
                       detailed_sentences=(2, 2))[: args.pairs]
    config = TrainConfig(batch_size=8, micro_batch_size=4, epochs=1.0, warmup_steps=0, log_every=1000)
    print(f"model {args.model}; {len(pairs)} pairs, batch {config.batch_size} (micro {config.micro_batch_size}), "
          f"LoRA r{config.lora_r}/alpha {config.lora_alpha} on {','.join(config.lora_target_modules)}, fp32 CPU, "
          f"{torch.get_num_threads()} threads", flush=True)
    results = {}
    for name, cfg in (("ours: plain DPO", plain_dpo(config)),
                      ("ours: P-DPO (individual, alpha 0.5)", dataclasses.replace(config, user_model="individual"))):
        start = time.perf_counter()
        train(cfg, args.model, pairs, log=lambda *_: None)
        results[name] = time.perf_counter() - start
        print(f"  {name}: {results[name]:.1f} s", flush=True)
    if not args.skip_trl:
        try:
            results["TRL DPOTrainer (trainer.train() only)"] = run_trl(args.model, pairs, plain_dpo(config))
        except ImportError as exc:
            print(f"  TRL not installed ({exc}); pip install trl to compare")
    base = results["ours: plain DPO"]
    print("\n| path | seconds | pairs/s | relative to our plain DPO |")
    print("|---|---|---|---|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.1f} | {len(pairs) / seconds:.3f} | {seconds / base:.2f}x time |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
