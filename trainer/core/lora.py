"""The shared LoRA adapter (peft), with target modules checked against the model first."""

from __future__ import annotations

from peft import LoraConfig, get_peft_model
from torch import nn


class LoraTargetError(ValueError):
    """None of the requested LoRA target modules exists in the model."""


def linear_module_names(model: nn.Module) -> list[str]:
    """Short names of the model's linear layers (what LoRA can target), sorted."""
    return sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, nn.Linear)})


def check_targets(model: nn.Module, targets: list[str]) -> None:
    available = linear_module_names(model)
    if not any(t in available for t in targets):
        raise LoraTargetError(
            f"LoRA target modules {targets} match nothing in {type(model).__name__}; "
            f"its linear layers are: {', '.join(available)}"
        )


def add_lora(model: nn.Module, *, r: int, alpha: int, dropout: float, targets: list[str]):
    """Wrap ``model`` with a fresh LoRA adapter; only the adapter is trainable afterwards."""
    check_targets(model, targets)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets),
                        bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)
