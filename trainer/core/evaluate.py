"""Implicit-reward accuracy on held-out pairs: overall, per user (a table), seen vs unseen, per group.

Seen users are scored with their own vectors, users the model has not seen with
the generic user's; a plain model (no user model) scores everyone the same way.
A pair counts as correct when the implicit reward of the chosen reply is higher.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from trainer.core.data import Pair
from trainer.core.losses import pair_loss
from trainer.core.policy import PreferenceModel, encode_pairs, policy_logps
from trainer.core.reference import ReferenceCache
from trainer.core.usermodel import GENERIC, UserIndex
from trainer.core.winrate import wilson


@dataclass
class EvalResult:
    accuracy: float  # over all pairs
    n: int
    metrics: dict = field(default_factory=dict)  # TRL names with an eval/ prefix
    per_user: list[dict] = field(default_factory=list)  # user_id, seen, n, accuracy, margin, group
    seen: dict = field(default_factory=dict)  # {"n", "accuracy"} for users with their own vectors
    unseen: dict = field(default_factory=dict)  # {"n", "accuracy"} for users scored as the generic user
    groups: dict = field(default_factory=dict)  # group label (pair.extra["group"]) -> {"n", "accuracy"}

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "n": self.n, "metrics": self.metrics, "seen": self.seen,
                "unseen": self.unseen, "groups": self.groups, "per_user": self.per_user}


def _share(flags: list[bool]) -> dict:
    return {"n": len(flags), "accuracy": (sum(flags) / len(flags)) if flags else None}


@torch.no_grad()
def pair_rewards(core: PreferenceModel, tokenizer, user_index: UserIndex | None, config, pairs: list[Pair], *,
                 device, batch_size: int = 16, refs: ReferenceCache | None = None,
                 force_generic: bool = False, progress: Callable[[int, int], None] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(chosen rewards (P,), rejected rewards (P,), losses (P,)) under each pair's own user row."""
    index = user_index if core.user_model is not None else None
    encoded = encode_pairs(tokenizer, pairs, index, config)
    refs = refs or ReferenceCache()
    was_training = core.training
    core.eval()
    out_c, out_r, out_l = [], [], []
    try:
        for s in range(0, len(encoded), batch_size):
            chunk = encoded[s:s + batch_size]
            refs.fill(core, chunk, device=device, batch_size=batch_size)
            rows = [GENERIC] * len(chunk) if force_generic else None
            personal, generic = policy_logps(core, chunk, alpha=1.0 if core.user_model is not None else 0.0,
                                             device=device, user_rows=rows)
            losses, rc, rr = pair_loss(config.loss, personal or generic, refs.get(chunk, device), beta=config.beta,
                                       gamma=config.simpo_gamma)
            out_c.append(rc.cpu()), out_r.append(rr.cpu()), out_l.append(losses.cpu())
            if progress is not None:
                progress(s + len(chunk), len(encoded))
    finally:
        core.train(was_training)
    return torch.cat(out_c), torch.cat(out_r), torch.cat(out_l)


def evaluate(core: PreferenceModel, tokenizer, user_index: UserIndex | None, config, pairs: list[Pair], *,
             device="cpu", batch_size: int = 16, group_of: Callable[[Pair], str | None] | None = None,
             progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Accuracy tables for ``pairs``; users not in ``user_index`` are unseen and use the generic vectors.

    A pair's group is ``group_of(pair)`` when given, else its ``group`` field (None: no group).
    """
    if not pairs:
        return EvalResult(accuracy=float("nan"), n=0)
    group_of = group_of or (lambda p: p.extra.get("group"))
    rc, rr, losses = pair_rewards(core, tokenizer, user_index, config, pairs, device=device, batch_size=batch_size,
                                  progress=progress)
    correct = (rc > rr).tolist()
    margins = (rc - rr).tolist()
    seen_of = lambda u: user_index is not None and u in user_index  # noqa: E731 (a plain model has an index too)
    users: dict[str, list[int]] = {}
    groups: dict[str, list[bool]] = {}
    for i, p in enumerate(pairs):
        users.setdefault(p.user_id, []).append(i)
        if group_of(p) is not None:
            groups.setdefault(str(group_of(p)), []).append(correct[i])
    per_user = [{"user_id": u, "seen": seen_of(u), "n": len(ix), "accuracy": sum(correct[i] for i in ix) / len(ix),
                 "margin": sum(margins[i] for i in ix) / len(ix),
                 "group": group_of(pairs[ix[0]])} for u, ix in users.items()]
    metrics = {"eval/loss": losses.mean().item(), "eval/rewards/chosen": rc.mean().item(),
               "eval/rewards/rejected": rr.mean().item(), "eval/rewards/margins": (rc - rr).mean().item(),
               "eval/rewards/accuracies": sum(correct) / len(correct)}
    return EvalResult(
        accuracy=sum(correct) / len(correct), n=len(correct), metrics=metrics, per_user=per_user,
        seen=_share([c for c, p in zip(correct, pairs) if seen_of(p.user_id)]),
        unseen=_share([c for c, p in zip(correct, pairs) if not seen_of(p.user_id)]),
        groups={g: _share(flags) for g, flags in sorted(groups.items())},
    )


def accuracy_text(figures: dict | None) -> str:
    """{"accuracy", "n"} as "78.4% (n=120)", or "-" when there is no figure."""
    if not figures or figures.get("accuracy") is None:
        return "-"
    return f"{figures['accuracy']:.1%} (n={figures['n']})"


def accuracy_interval_text(figures: dict | None) -> str:
    """{"accuracy", "n"} as "78.4% [70.2, 85.0], n=120" with its 95 % Wilson interval, or "-"."""
    if not figures or figures.get("accuracy") is None or not figures.get("n"):
        return "-"
    low, high = wilson(figures["accuracy"], figures["n"])
    return f"{figures['accuracy']:.1%} [{low * 100:.1f}, {high * 100:.1f}], n={figures['n']}"


def comparison_table(results: dict[str, EvalResult]) -> str:
    """Side-by-side text table of several models' results (e.g. P-DPO vs plain DPO)."""
    groups = sorted({g for r in results.values() for g in r.groups})
    head = ["model", "overall", "seen", "unseen", *groups]
    rows = []
    for name, r in results.items():
        rows.append([name, accuracy_text({"accuracy": r.accuracy, "n": r.n}), accuracy_text(r.seen),
                     accuracy_text(r.unseen), *[accuracy_text(r.groups.get(g)) for g in groups]])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda row: " | ".join(str(x).ljust(w) for x, w in zip(row, widths))  # noqa: E731
    return "\n".join([fmt(head), "-+-".join("-" * w for w in widths), *map(fmt, rows)])
