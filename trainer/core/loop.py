"""The training loop: P-*PO (or plain *PO) with a shared LoRA and a user model.

Runs as one process, or as several under ``accelerate launch`` / ``torchrun``
(DDP: each process takes its slice of every global batch). Where it waits for the
device (host syncs, counted by ``python -m bench host_syncs``): the metrics and the
NaN check of log and checkpoint steps; the reference pass of a pair the first time a
process meets it (its log-probs are kept on the host: all in the first epoch with
one process, spread over the epochs with several); with several processes and a
cancel check, one broadcast per micro-batch so that all stop at the same one; and
transformers' own look at the attention mask, twice per forward pass. The reply
tokens are picked by positions worked out on the host when the batch is built, so
projecting them onto the vocabulary never waits.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
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
from trainer.core.policy import EncodedPair, PreferenceModel, encode_pairs, policy_logps, truncation_report
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


# transformers builds a model under process-wide patches (torch's default dtype, weight tying switched off) for
# the length of from_pretrained: a model that another thread finishes meanwhile comes out broken (its tied head
# left on the meta device) and the patch can outlive both. A worker serving replies in threads loads versions
# side by side, so whatever builds a model holds this lock.
BUILDING = threading.RLock()


def load_base(model_path: str):
    """(fp32 LM, tokenizer); fp32 master weights, bf16 comes from autocast on CUDA."""
    with BUILDING:
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

def pair_weights(micro: list[EncodedPair], device: torch.device) -> torch.Tensor | None:
    """The micro-batch's pair weights (B,) when any differs from 1 (margin-weighted pairing), else None."""
    if all(p.weight == 1.0 for p in micro):
        return None
    return torch.tensor([p.weight for p in micro], dtype=torch.float32, device=device)


def cancel_agreed(should_cancel: Callable[[], bool], world: int, device: torch.device) -> bool:
    """``should_cancel()`` of process 0, the same answer in every process (all of them must call this: with
    several processes it is a broadcast, a host sync)."""
    cancelled = should_cancel()
    if world == 1:
        return cancelled
    flag = torch.tensor(float(cancelled), device=device)
    dist.broadcast(flag, 0)
    return bool(flag)


def build_optimizer(core: PreferenceModel, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the LoRA (``lr_lora``), the user model (``lr_user``) and, for the cluster model with
    ``lr_mixture``, its mixture logits at their own rate: they live on another scale than embedding-sized
    vectors. Each group is named, for the logged learning rates."""
    lora = [p for p in core.lm.parameters() if p.requires_grad]
    user = list(core.user_model.parameters()) if core.user_model is not None else []
    mixture = [core.user_model.weights] if config.user_model == "cluster" and config.lr_mixture else []
    user = [p for p in user if not any(p is m for m in mixture)]
    groups = [{"params": lora, "lr": config.lr_lora, "name": "lora"}]
    if user:
        groups.append({"params": user, "lr": config.lr_user, "name": "user"})
    if mixture:
        groups.append({"params": mixture, "lr": config.lr_mixture, "name": "mixture"})
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


class _Run:
    """What one training run holds between optimizer steps, and the steps' parts: resume, one step,
    the metrics of a log step, a checkpoint."""

    def __init__(self, config: TrainConfig, core: PreferenceModel, encoded: list, index: UserIndex, *,
                 n_pairs: int, device: torch.device, checkpoint_dir: Path | None):
        self.config, self.core, self.encoded, self.index = config, core, encoded, index
        self.rank, self.world = distributed()
        self.device, self.autocast = device, autocast_for(device, config)
        self.alpha = config.alpha if config.personalized else 0.0
        self.checkpoint_dir = checkpoint_dir
        self.optimizer = build_optimizer(core, config)
        self.total = config.total_steps(n_pairs)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule(config, self.total))
        self.refs = ReferenceCache()
        self.history: list[dict] = []
        self.diagnostics: list[dict] = []
        self.step = 0
        self.last_good: Path | None = None
        self.model = core  # wrapped in DDP once resumed, with several processes
        self.micro_per_step = config.batch_size // self.world // config.micro_batch_size  # on this process
        self.order = pair_order(len(encoded), self.total, config.batch_size, config.seed)
        self.n_pairs = n_pairs
        self._start_window()

    def _start_window(self) -> None:
        """Sums over the steps since the last log step (on the device: adding them costs no host sync)."""
        self.sums: dict[str, torch.Tensor] = {}
        self.non_finite = torch.zeros((), dtype=torch.bool, device=self.device)  # any NaN/inf loss since the check
        self.window_steps = self.window_examples = self.window_tokens = 0
        self.window_start = time.perf_counter()

    def resume(self, ckpt: Path, log) -> None:
        state = load_checkpoint(ckpt)
        if state["config"] != self.config.to_dict():
            raise TrainingError(f"{ckpt} was written by a run with a different config; use a new folder.")
        self.core.load_state_dict(state["trainable"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.refs.load_state_dict(state["refs"])
        self.history, self.diagnostics, self.step = state["history"], state["diagnostics"], state["step"]
        rng = state["rng"]
        set_rng_state(rng[self.rank] if self.rank < len(rng) else rng[0])
        self.last_good = ckpt
        log(f"Resumed from {ckpt} at step {self.step}/{self.total}")

    def checkpoint(self) -> None:
        """A checkpoint of the last whole step (process 0 writes it; every process gives its random state)."""
        gathered = [None] * self.world
        if self.world > 1:
            dist.all_gather_object(gathered, rng_state())
        else:
            gathered = [rng_state()]
        if self.rank != 0 or self.checkpoint_dir is None:
            return
        self.last_good = save_checkpoint(self.checkpoint_dir, self.step, {
            "config": self.config.to_dict(), "step": self.step, "trainable": trainable_state(self.core),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "refs": self.refs.state_dict(), "history": self.history, "diagnostics": self.diagnostics,
            "rng": gathered, "user_index": self.index.to_json(),
        })

    def micro_batches(self) -> list[list]:
        """This process's share of the step's global batch, in micro-batches."""
        size = self.config.batch_size
        global_batch = self.order[self.step * size:(self.step + 1) * size]
        share = [self.encoded[i] for i in global_batch[self.rank::self.world]]
        return [share[i:i + self.config.micro_batch_size] for i in range(0, len(share), self.config.micro_batch_size)]

    def one_step(self, check: Callable[[], bool] | None, on_phase) -> bool:
        """One optimizer step: every micro-batch's reference pass (the first time it is seen), forward and
        backward, then clip, step and schedule. False when ``check()`` asked to stop between micro-batches: the
        partial step is dropped and the random state rewound, so a resume redoes it exactly."""
        batches = self.micro_batches()
        share = sum(len(m) for m in batches)
        at_start = rng_state() if check is not None else None
        for k, micro in enumerate(batches):
            if k and check is not None and check():
                self.optimizer.zero_grad(set_to_none=True)
                set_rng_state(at_start)
                return False
            self.refs.fill(self.core, micro, device=self.device, autocast=self.autocast)
            last = k == len(batches) - 1  # DDP averages the gradients once, on the step's last micro-batch
            with (contextlib.nullcontext() if last or self.world == 1 else self.model.no_sync()):
                with self.autocast():
                    personal, generic = policy_logps(self.model, micro, alpha=self.alpha, device=self.device)
                loss, metrics = personalized_loss(self.config.loss, personal, generic,
                                                  self.refs.get(micro, self.device), alpha=self.alpha,
                                                  beta=self.config.beta, gamma=self.config.simpo_gamma,
                                                  pair_weights=pair_weights(micro, self.device))
                (loss * len(micro) / share).backward()
            self.non_finite |= ~torch.isfinite(loss)
            for name, value in metrics.items():
                self.sums[name] = self.sums.get(name, 0.0) + value * len(micro) / share
            self.window_tokens += sum(len(p.prompt_ids) * 2 + len(p.chosen_ids) + len(p.rejected_ids) for p in micro)
            on_phase("training", self.step * self.micro_per_step + k + 1, self.total * self.micro_per_step)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.core.parameters(), self.config.max_grad_norm)
        self.sums["grad_norm"] = self.sums.get("grad_norm", 0.0) + grad_norm
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.window_steps += 1
        self.window_examples += self.config.batch_size
        return True

    def stop_if_not_finite(self) -> None:
        """Raise when a loss since the last check was NaN or infinite (a host sync: log and checkpoint steps)."""
        if self.world > 1:
            dist.all_reduce(self.non_finite, op=dist.ReduceOp.MAX)
        if bool(self.non_finite):
            where = f"; the last good checkpoint is {self.last_good}" if self.last_good else "; no checkpoint was saved"
            raise TrainingError(f"The loss became NaN or infinite at or before step {self.step}: training stopped"
                                f"{where}. Lower the learning rates or check the data.")

    def log_metrics(self) -> dict:
        """The means over the steps since the last log step, averaged over the processes (one host sync)."""
        elapsed = time.perf_counter() - self.window_start
        means = torch.stack([v / self.window_steps for v in self.sums.values()])
        if self.world > 1:
            dist.all_reduce(means)
            means /= self.world
        metrics = dict(zip(self.sums, means.tolist()))
        metrics.update({
            "step": self.step, "epoch": self.step * self.config.batch_size / self.n_pairs,
            **{f"learning_rate/{g['name']}": g["lr"] for g in self.optimizer.param_groups},
            "examples_per_second": self.window_examples / elapsed,
            "tokens_per_second": self.window_tokens * self.world / elapsed,
        })
        self.history.append(metrics)
        self._start_window()
        return metrics


def train(config: TrainConfig, model_path: str, pairs: list[Pair], *, checkpoint_dir: Path | None = None,
          progress: Progress | None = None, should_cancel: Callable[[], bool] | None = None,
          users: list[str] | None = None, resume: bool = True, log=print,
          on_diagnostics: Callable[[int, dict], None] | None = None, on_phase: Phase | None = None) -> TrainResult:
    """Train on ``pairs``; resume from ``checkpoint_dir`` when it holds a checkpoint.

    progress(step, total, metrics) is called after every optimizer step; metrics
    is a dict of floats on log steps and None otherwise. should_cancel() is
    checked before the first step, between micro-batches and after every
    optimizer step (a partial step is dropped; with several processes, process
    0's answer counts, broadcast to all: a host sync per check); a cancelled run
    saves a checkpoint of its last whole step (when it has a folder) and returns
    with status "cancelled". ``users`` may list users beyond those with pairs
    (they get rows but stay at their start). on_phase(phase, done, total)
    follows the work inside the steps too: loading the model, tokenising, and
    training micro-batch by micro-batch (the first epoch's micro-batches include
    their reference pass, which copies its log-probs to the host).
    """
    on_phase = on_phase or (lambda *_: None)
    require_pairs(pairs)
    rank, world = distributed()
    if config.batch_size % world or (config.batch_size // world) % config.micro_batch_size:
        raise ValueError(f"batch_size {config.batch_size} must split into {world} processes x whole micro-batches "
                         f"of {config.micro_batch_size}")
    device = pick_device(config)
    index = UserIndex(sorted({p.user_id for p in pairs} | set(users or [])))
    on_phase("loading the model", 0, None)
    lm, tokenizer = load_base(model_path)
    core = build_model(lm, tokenizer, config, len(index)).to(device)
    encoded = encode_pairs(tokenizer, pairs, index if config.personalized else None, config,
                           progress=lambda done, n: on_phase("tokenising", done, n))
    data = {"pairs": len(pairs), "users": len(index), **truncation_report(encoded),
            "users_without_pairs": sorted(set(users or []) - {p.user_id for p in pairs})}
    run = _Run(config, core, encoded, index, n_pairs=len(pairs), device=device, checkpoint_dir=checkpoint_dir)
    found = latest_checkpoint(checkpoint_dir) if resume else None
    if found is not None:
        run.resume(found, log)
    run.model = torch.nn.parallel.DistributedDataParallel(core) if world > 1 else core
    probe = encoded[: config.diagnostics_pairs]
    check = functools.partial(cancel_agreed, should_cancel, world, device) if should_cancel is not None else None

    core.train()
    on_phase("training", run.step * run.micro_per_step, run.total * run.micro_per_step)
    cancelled = check is not None and check()  # asked during model load or tokenising
    while not cancelled and run.step < run.total:
        if not run.one_step(check, on_phase):  # stopped between micro-batches: keep the last whole step
            cancelled = True
            run.checkpoint()
            break
        if config.diagnostics_every and run.step % config.diagnostics_every == 0 and rank == 0:
            run.diagnostics.append({"step": run.step, **entanglement_report(core, probe, device=device)})
            if on_diagnostics is not None:  # a dashboard shows them live, not only at the end
                on_diagnostics(run.step, run.diagnostics[-1])
        cancelled = check is not None and check()  # every process stops at the same step
        ended = run.step == run.total
        is_log = run.step % config.log_every == 0 or ended or cancelled
        is_checkpoint = bool(config.checkpoint_every) and run.step % config.checkpoint_every == 0 and not ended
        if is_log or is_checkpoint:
            run.stop_if_not_finite()
        metrics = run.log_metrics() if is_log else None
        if is_checkpoint or (cancelled and not ended):
            run.checkpoint()
        if progress is not None:
            progress(run.step, run.total, metrics)
        cancelled = cancelled and not ended
    core.eval()
    return TrainResult(model=core, tokenizer=tokenizer, user_index=index, config=config,
                       status="cancelled" if cancelled else "completed", step=run.step, total_steps=run.total,
                       history=run.history, diagnostics=run.diagnostics, data=data, checkpoint=run.last_good)
