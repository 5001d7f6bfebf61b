"""Run configurations: one dataclass per run type, every field defaulted.

Defaults are the paper's PRISM settings (Li et al., arXiv 2402.05133, §5 of DESIGN.md).
A config is stored as JSON with every run and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

USER_MODELS = ("individual", "cluster", "none")
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass
class TrainConfig:
    # --- what is trained ---
    user_model: str = "individual"  # individual | cluster | none (none = plain preference optimisation)
    loss: str = "dpo"  # a key of losses.LOSSES: dpo | ipo | simpo | hinge
    beta: float = 0.5  # inverse temperature of the implicit reward
    alpha: float = 0.5  # weight of the personal term; 1 - alpha goes to the generic user 0
    simpo_gamma: float = 0.5  # SimPO's target reward margin (only used by loss=simpo)
    n_user_tokens: int = 10  # T_u: soft-prompt vectors per user
    n_clusters: int = 10  # K: shared components of the cluster user model
    use_profile: bool = False  # put the pair's textual profile into the prompt (same text for every term)
    # --- LoRA ---
    lora_r: int = 8  # LoRA rank: size of the low-rank update of each adapted weight
    lora_alpha: int = 16  # LoRA scaling numerator: the update is scaled by lora_alpha / lora_r
    lora_dropout: float = 0.05  # dropout on the LoRA input during training
    lora_target_modules: list[str] = field(default_factory=lambda: list(ATTENTION))  # layers given a LoRA
    # --- optimisation ---
    lr_lora: float = 5e-5  # learning rate of the shared LoRA adapter
    lr_user: float = 5e-5  # learning rate of the user model (the per-user vectors)
    lr_mixture: float = 0.0  # cluster model only: lr of the per-user mixture logits (0 = lr_user)
    weight_decay: float = 0.0  # AdamW weight decay of every trained parameter
    warmup_steps: int = 150  # linear warmup, then cosine decay to zero; clipped to the run's length
    batch_size: int = 32  # effective batch: pairs per optimizer step across all processes
    micro_batch_size: int = 8  # pairs per forward pass on one process; gradients accumulate up to batch_size
    epochs: float = 1.0  # passes over the training pairs (ignored when max_steps is set)
    max_steps: int = 0  # optimizer steps of the run; 0 = from epochs
    max_grad_norm: float = 1.0  # gradients are clipped to this norm before each step
    max_prompt_length: int = 470  # tokens; longer prompts lose their oldest history first
    max_length: int = 770  # tokens of prompt + reply
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, ~30 % slower
    seed: int = 42  # seeds the split, the pair order, the initial vectors and dropout
    # --- device ---
    device: str = "auto"  # auto = cuda when present else cpu; or an explicit torch device string
    bf16: bool | None = None  # None = bf16 autocast on CUDA, fp32 on CPU
    # --- bookkeeping ---
    log_every: int = 10  # optimizer steps between metric reports (the only steps that sync to the host)
    checkpoint_every: int = 0  # optimizer steps between checkpoints; 0 = none
    diagnostics_every: int = 0  # optimizer steps between gradient-entanglement reports; 0 = none
    diagnostics_pairs: int = 4  # pairs used for each gradient-entanglement report
    report_to: str = ""  # trackers the metrics also go to, comma-separated: tensorboard, mlflow, trackio ("": none)
    # --- evaluation ---
    eval_max_new_tokens: int = 96  # new tokens per reply the run's evaluation generates (read off the chosen replies)

    def __post_init__(self):
        if self.user_model not in USER_MODELS:
            raise ValueError(f"user_model must be one of {USER_MODELS}, not {self.user_model!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], not {self.alpha}")
        if self.batch_size % self.micro_batch_size:
            raise ValueError("batch_size must be a multiple of micro_batch_size")
        if self.max_prompt_length >= self.max_length:
            raise ValueError("max_prompt_length must be smaller than max_length")
        if self.max_steps < 0:
            raise ValueError("max_steps must be 0 (from epochs) or a positive number of steps")
        if self.eval_max_new_tokens < 1:
            raise ValueError("eval_max_new_tokens must be a positive number of tokens")
        from trainer.core.tracking import parse_report_to

        self.report_to = ",".join(parse_report_to(self.report_to))

    def total_steps(self, n_pairs: int) -> int:
        """Optimizer steps of a run on ``n_pairs`` training pairs."""
        if self.max_steps:
            return self.max_steps
        return max(1, math.ceil(n_pairs * self.epochs / self.batch_size))

    @property
    def personalized(self) -> bool:
        return self.user_model != "none"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


# Plain DPO, the baseline every report compares against: one model for everyone, the DPO loss, the rest of the
# settings as they were. The dashboard's baselines, --plain and the benchmarks all apply this one change.
PLAIN_DPO = {"user_model": "none", "loss": "dpo", "alpha": 0.0}


def plain_dpo(config: TrainConfig) -> TrainConfig:
    """``config`` as its plain-DPO baseline (``PLAIN_DPO``)."""
    return dataclasses.replace(config, **PLAIN_DPO)


@dataclass
class FastFitConfig:
    """Fit one new user's vectors with the LoRA, the generic user and all other users frozen.

    ``linear`` (default): one backward pass gives every reply's log-prob gradient with respect
    to the user's vectors; the loss of that linearised model is minimised within a few trust
    radii (no model passes), and each candidate is checked with one forward pass of the real
    model, keeping the best. A round costs about two training steps. ``adam``: ``steps``
    full-batch Adam steps, each a forward and backward pass.
    """

    method: str = "linear"  # linear | adam
    rounds: int = 1  # linear: linearise-solve-check rounds (each starts where the last one ended)
    radii: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)  # linear: trust radii, as multiples of |generic vectors|
    steps: int = 40  # adam: full-batch optimizer steps over the user's pairs
    lr: float = 1e-2  # adam: much higher than training: few parameters, few pairs
    weight_decay: float = 0.0  # adam: pull towards the generic user (offsets start at zero)
    bf16: bool | None = None  # None = as the run's config on this device (TrainConfig.bf16)
    seed: int = 0

    def __post_init__(self):
        if self.method not in ("linear", "adam"):
            raise ValueError(f"fast-fit method must be 'linear' or 'adam', not {self.method!r}")


