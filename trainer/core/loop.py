"""The training loop: P-*PO (or plain *PO) with a shared LoRA and a user model.

Runs as one process, or as several under ``accelerate launch`` / ``torchrun``
(DDP: each process takes its slice of every global batch). Host syncs
(``.item()``, NaN checks) happen only on log and checkpoint steps.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer.core.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trainable_state,
)
from trainer.core.config import TrainConfig
from trainer.core.data import Pair, require_pairs
from trainer.core.diagnostics import entanglement_report
from trainer.core.lora import add_lora
from trainer.core.losses import personalized_loss
from trainer.core.policy import PreferenceModel, encode_pairs, policy_logps, truncation_report
from trainer.core.progress import Phase
from trainer.core.reference import ReferenceCache
from trainer.core.usermodel import UserIndex, build_user_model

Progress = Callable[[int, int, "dict | None"], None]


class TrainingError(RuntimeError):
    """Training stopped; the message says why and where the last good checkpoint is."""


@dataclass
class TrainResult:
    model: PreferenceModel  # unwrapped, on the training device, in eval mode
    tokenizer: object
    user_index: UserIndex
    config: TrainConfig
    status: str  # completed | cancelled
    step: int
    total_steps: int
    history: list[dict] = field(default_factory=list)  # one dict per log step
    diagnostics: list[dict] = field(default_factory=list)  # one dict per diagnostics step
    data: dict = field(default_factory=dict)  # pair counts, truncation, users without pairs
    checkpoint: Path | None = None


# --- process and device -----------------------------------------------------------------------------

def distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def pick_device(config: TrainConfig) -> torch.device:
    if config.device != "auto":
        return torch.device(config.device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def autocast_for(device: torch.device, config: TrainConfig):
    bf16 = config.bf16 if config.bf16 is not None else device.type == "cuda"
    if bf16:
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags to go by
        return ""


def cpu_has_native_bf16() -> bool:
    """Does this CPU compute bf16 natively (AVX512-BF16 or AMX)? Without it bf16 autocast is emulated:
    several times slower than fp32 (an AVX2-only EPYC took over 100 s per bf16 step, 36 s in fp32)."""
    return "avx512_bf16" in _cpuinfo() or "amx_bf16" in _cpuinfo()


def describe_cpu() -> str:
    """One line for benchmark headers: figures from different CPUs are not comparable."""
    name = next((ln.split(":", 1)[1].strip() for ln in _cpuinfo().splitlines() if ln.startswith("model name")),
                "CPU")
    return (f"{name}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads, "
            f"{'native' if cpu_has_native_bf16() else 'no native'} bf16")


def describe_device(device: str | torch.device = "cpu") -> str:
    """The benchmark header line for the device that runs it: the GPU's name, or ``describe_cpu``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return describe_cpu()


def precision_for(choice: str, device: str | torch.device = "cpu") -> str:
    """A benchmark's --precision: "auto" is bf16 on a GPU and where the CPU has it natively, else fp32."""
    if choice != "auto":
        return choice
    return "bf16" if torch.device(device).type == "cuda" or cpu_has_native_bf16() else "fp32"


def load_base(model_path: str):
    """(fp32 LM, tokenizer); fp32 master weights, bf16 comes from autocast on CUDA."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    lm = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    return lm, tokenizer


def build_model(lm, tokenizer, config: TrainConfig, n_users: int) -> PreferenceModel:
    """Freeze the LM, add the LoRA adapter and (for P-*PO) the user model; seeded."""
    torch.manual_seed(config.seed)
    for p in lm.parameters():
        p.requires_grad_(False)
    lm = add_lora(lm, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                  targets=config.lora_target_modules)
    if config.gradient_checkpointing:  # recompute each layer's activations in the backward pass
        lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    init = lm.get_input_embeddings().weight.detach()  # (V, H)
    user_model = build_user_model(config.user_model, n_users, config.n_user_tokens, init.shape[1],
                                  init_embedding=init, n_clusters=config.n_clusters, seed=config.seed)
    return PreferenceModel(lm, user_model, tokenizer)


def schedule(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Linear warmup then cosine decay to zero; warmup never exceeds a tenth of a short run."""
    warmup = min(config.warmup_steps, total_steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def pair_order(n: int, total_steps: int, batch_size: int, seed: int) -> list[int]:
    """The global sequence of pair indices, one seeded permutation per epoch, cycled to fill every step."""
    order: list[int] = []
    epoch = 0
    while len(order) < total_steps * batch_size:
        g = torch.Generator().manual_seed(seed + epoch)
        order += torch.randperm(n, generator=g).tolist()
        epoch += 1
    return order[: total_steps * batch_size]


# --- the loop --------------------------------------------------------------------------------------

def agreed(should_cancel: Callable[[], bool], world: int, device: torch.device) -> bool:
    """``should_cancel()`` of process 0, the same answer in every process (all of them must call this)."""
    cancelled = should_cancel()
    if world == 1:
        return cancelled
    flag = torch.tensor(float(cancelled), device=device)
    dist.broadcast(flag, 0)
    return bool(flag)


def train(config: TrainConfig, model_path: str, pairs: list[Pair], *, checkpoint_dir: Path | None = None,
          progress: Progress | None = None, should_cancel: Callable[[], bool] | None = None,
          users: list[str] | None = None, resume: bool = True, log=print,
          on_diagnostics: Callable[[int, dict], None] | None = None, on_phase: Phase | None = None) -> TrainResult:
    """Train on ``pairs``; resume from ``checkpoint_dir`` when it holds a checkpoint.

    progress(step, total, metrics) is called after every optimizer step; metrics
    is a dict of floats on log steps and None otherwise. should_cancel() is
    checked after every optimizer step, before the first step and between
    micro-batches (a partial step is dropped; with several processes, process 0's
    answer counts); a cancelled run saves
    a checkpoint of its last whole step (when it has a folder) and returns with
    status "cancelled". ``users`` may list
    users beyond those with pairs (they get rows but stay at their start).
    on_phase(phase, done, total) follows the work inside the steps too: loading
    the model, tokenising, and training micro-batch by micro-batch (the first
    epoch's micro-batches include their reference pass).
    """
    on_phase = on_phase or (lambda *_: None)
    require_pairs(pairs)
    alpha = config.alpha if config.personalized else 0.0
    rank, world = distributed()
    device = pick_device(config)
    autocast = autocast_for(device, config)
    per_rank = config.batch_size // world
    if config.batch_size % world or per_rank % config.micro_batch_size:
        raise ValueError(f"batch_size {config.batch_size} must split into {world} processes x whole micro-batches "
                         f"of {config.micro_batch_size}")

    index = UserIndex(sorted({p.user_id for p in pairs} | set(users or [])))
    on_phase("loading the model", 0, None)
    lm, tokenizer = load_base(model_path)
    core = build_model(lm, tokenizer, config, len(index)).to(device)
    encoded = encode_pairs(tokenizer, pairs, index if config.personalized else None, config,
                           progress=lambda done, n: on_phase("tokenising", done, n))
    data = {"pairs": len(pairs), "users": len(index), **truncation_report(encoded),
            "users_without_pairs": sorted(set(users or []) - {p.user_id for p in pairs})}

    lora_params = [p for p in core.lm.parameters() if p.requires_grad]
    # Mixture logits live on another scale than embedding-sized vectors, so they may get their own rate.
    user_params = list(core.user_model.parameters()) if core.user_model is not None else []
    mixture = [core.user_model.weights] if config.user_model == "cluster" and config.lr_mixture else []
    if mixture:
        user_params = [p for p in user_params if p is not core.user_model.weights]
    groups = [{"params": lora_params, "lr": config.lr_lora, "name": "lora"}]
    if user_params:
        groups.append({"params": user_params, "lr": config.lr_user, "name": "user"})
    if mixture:
        groups.append({"params": mixture, "lr": config.lr_mixture, "name": "mixture"})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    total = config.total_steps(len(pairs))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(config, total))
    refs = ReferenceCache()
    history: list[dict] = []
    diagnostics: list[dict] = []
    step = 0

    ckpt = latest_checkpoint(checkpoint_dir) if resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt)
        if state["config"] != config.to_dict():
            raise TrainingError(f"{ckpt} was written by a run with a different config; use a new folder.")
        core.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        refs.load_state_dict(state["refs"])
        history, diagnostics, step = state["history"], state["diagnostics"], state["step"]
        set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
        log(f"Resumed from {ckpt} at step {step}/{total}")

    model = torch.nn.parallel.DistributedDataParallel(core) if world > 1 else core
    order = pair_order(len(encoded), total, config.batch_size, config.seed)
    probe = encoded[: config.diagnostics_pairs]
    last_good = ckpt

    def checkpoint(at: int) -> Path | None:
        gathered = [None] * world
        if world > 1:
            dist.all_gather_object(gathered, rng_state())
        else:
            gathered = [rng_state()]
        if rank != 0 or checkpoint_dir is None:
            return None
        return save_checkpoint(checkpoint_dir, at, {
            "config": config.to_dict(), "step": at, "trainable": trainable_state(core),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "refs": refs.state_dict(),
            "history": history, "diagnostics": diagnostics, "rng": gathered, "user_index": index.to_json(),
        })

    sums: dict[str, torch.Tensor] = {}
    bad = torch.zeros((), dtype=torch.bool, device=device)  # any non-finite loss since the last check
    n_steps = n_examples = n_tokens = 0
    tick = time.perf_counter()
    status = "completed"
    per_step = per_rank // config.micro_batch_size  # micro-batches of one optimizer step on this process
    core.train()
    on_phase("training", step * per_step, total * per_step)
    # A cancel is checked between micro-batches too (a step of a big batch may take minutes); several
    # processes take process 0's answer, asked at the same micro-batch everywhere, so they stop together.
    check_within = functools.partial(agreed, should_cancel, world, device) if should_cancel is not None else None
    if check_within is not None and check_within():  # asked during model load or tokenising
        core.eval()
        return TrainResult(core, tokenizer, index, config, "cancelled", step, total, history, diagnostics, data,
                           last_good)
    while step < total:
        global_batch = order[step * config.batch_size:(step + 1) * config.batch_size]
        mine = [encoded[i] for i in global_batch[rank::world]]
        micro_batches = [mine[i:i + config.micro_batch_size] for i in range(0, len(mine), config.micro_batch_size)]
        at_step_start = rng_state() if check_within is not None else None
        for k, micro in enumerate(micro_batches):
            if k and check_within is not None and check_within():  # drop the partial step, keep the last whole one
                optimizer.zero_grad(set_to_none=True)
                set_rng_state(at_step_start)  # so a resume redoes this step exactly
                core.eval()
                last_good = checkpoint(step) or last_good
                return TrainResult(core, tokenizer, index, config, "cancelled", step, total, history, diagnostics,
                                   data, last_good)
            refs.fill(core, micro, device=device, autocast=autocast)
            sync = k == len(micro_batches) - 1
            with (contextlib.nullcontext() if sync or world == 1 else model.no_sync()):
                with autocast():
                    personal, generic = policy_logps(model, micro, alpha=alpha, device=device)
                loss, metrics = personalized_loss(config.loss, personal, generic, refs.get(micro, device),
                                                  alpha=alpha, beta=config.beta, gamma=config.simpo_gamma)
                (loss * len(micro) / len(mine)).backward()
            bad |= ~torch.isfinite(loss)
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + value * len(micro) / len(mine)
            n_tokens += sum(len(p.prompt_ids) * 2 + len(p.chosen_ids) + len(p.rejected_ids) for p in micro)
            on_phase("training", step * per_step + k + 1, total * per_step)
        grad_norm = torch.nn.utils.clip_grad_norm_(core.parameters(), config.max_grad_norm)
        sums["grad_norm"] = sums.get("grad_norm", 0.0) + grad_norm
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        n_steps += 1
        n_examples += len(global_batch)

        if config.diagnostics_every and step % config.diagnostics_every == 0 and rank == 0:
            diagnostics.append({"step": step, **entanglement_report(core, probe, device=device)})
            if on_diagnostics is not None:  # a dashboard shows them live, not only at the end
                on_diagnostics(step, diagnostics[-1])

        cancelled = check_within is not None and check_within()  # every process stops at the same step
        is_log = step % config.log_every == 0 or step == total or cancelled
        is_ckpt = bool(config.checkpoint_every) and step % config.checkpoint_every == 0 and step < total
        metrics_out = None
        if is_log or is_ckpt:
            if world > 1:
                dist.all_reduce(bad, op=dist.ReduceOp.MAX)
            if bool(bad):
                where = f"; the last good checkpoint is {last_good}" if last_good else "; no checkpoint was saved"
                raise TrainingError(f"The loss became NaN or infinite at or before step {step}: training stopped"
                                    f"{where}. Lower the learning rates or check the data.")
        if is_log:
            elapsed = time.perf_counter() - tick
            means = torch.stack([v / n_steps for v in sums.values()])
            if world > 1:
                dist.all_reduce(means)
                means /= world
            metrics_out = dict(zip(sums, means.tolist()))  # the one host sync of a log step
            metrics_out.update({
                "step": step, "epoch": step * config.batch_size / len(pairs),
                **{f"learning_rate/{g['name']}": g["lr"] for g in optimizer.param_groups},
                "examples_per_second": n_examples / elapsed, "tokens_per_second": n_tokens * world / elapsed,
            })
            history.append(metrics_out)
            sums, n_steps, n_examples, n_tokens, tick = {}, 0, 0, 0, time.perf_counter()
        if is_ckpt or (cancelled and step < total):
            last_good = checkpoint(step) or last_good
        if progress is not None:
            progress(step, total, metrics_out)
        if cancelled and step < total:
            status = "cancelled"
            break

    core.eval()
    return TrainResult(core, tokenizer, index, config, status, step, total, history, diagnostics, data, last_good)
