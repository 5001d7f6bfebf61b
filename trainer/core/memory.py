"""Peak memory of a training run, estimated before it starts from the model's shape and the run's settings.

Pure arithmetic on the model folder's ``config.json`` (no torch), so the web
process can say whether a run fits before a worker loads anything.

    peak = BASE + fp32 weights + activations of one micro-batch (forward and backward)

One micro-batch at its worst: every sequence as long as ``max_length`` (the
prompt at ``max_prompt_length``, the reply the rest). Its forward pass holds
``micro_batch_size x 2 replies x terms`` sequences, where terms is 2 for P-*PO
with 0 < alpha < 1 (the personal and the generic pass) and 1 otherwise. Three
kinds of tensor are kept for the backward pass, each with a fitted factor:

- per layer and token, the inputs of the linear layers, norms and activations:
  ``7 hidden + 4 intermediate`` floats (x ``PER_TOKEN``);
- per layer, token and head, the attention scores (x ``ATTENTION``);
- per reply token, the logits over the vocabulary (x ``LOGITS``).

With gradient checkpointing only each layer's input is kept, plus one layer's
tensors while it is recomputed. bf16 autocast (GPUs) halves the activations.
The factors were fitted by least squares (relative errors) to the peaks
``python -m bench memory`` measured on SmolLM2-135M in fp32 on a CPU (the table in
the README); on a GPU the same model is an uncalibrated guess until that benchmark
runs there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

FLOAT = 4  # bytes of an fp32 number
GIB = 1024 ** 3

# Fitted by `python -m bench memory --fit` on SmolLM2-135M, fp32, 2-core CPU. BASE is what is
# resident when training starts beyond the weights' nominal size: negative here, as the weights are read from
# memory-mapped safetensors and not every page is resident. ATTENTION came out 0: torch's CPU attention does
# not keep the (length x length) scores. CHECKPOINTED is the per-token factor with gradient checkpointing,
# fitted from the one configuration measured with it.
BASE = -0.095 * GIB
PER_TOKEN = 1.980
ATTENTION = 0.0
LOGITS = 0.235
CHECKPOINTED = 5.67


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @property
    def params(self) -> int:
        head_dim = self.hidden // self.heads
        attention = self.hidden * self.hidden * 2 + self.hidden * self.kv_heads * head_dim * 2
        per_layer = attention + 3 * self.hidden * self.intermediate + 2 * self.hidden
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * per_layer + embeddings + self.hidden


def shape_of(model_path: str | Path) -> ModelShape:
    """The shape of a transformers folder (its config.json); raises FileNotFoundError for a hub id."""
    config = json.loads((Path(model_path) / "config.json").read_text())
    return ModelShape(hidden=config["hidden_size"], intermediate=config["intermediate_size"],
                      layers=config["num_hidden_layers"], heads=config["num_attention_heads"],
                      kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
                      vocab=config["vocab_size"], tied=bool(config.get("tie_word_embeddings", False)))


@dataclass(frozen=True)
class MemoryEstimate:
    weights: float  # bytes
    per_token: float
    attention: float
    logits: float
    base: float = BASE

    @property
    def activations(self) -> float:
        return self.per_token + self.attention + self.logits

    @property
    def peak(self) -> float:
        return self.base + self.weights + self.activations

    def parts(self) -> dict[str, float]:
        """The peak in bytes by what holds them, none negative, adding up to the peak. A negative BASE (the
        memory-mapped weights are not all resident) is taken off the weights, not shown as a negative runtime."""
        parts = {"weights": max(0.0, self.weights + min(0.0, self.base)), "activations": self.activations}
        if self.base > 0:
            parts["runtime"] = self.base
        return parts

    def describe(self) -> str:
        parts = ", ".join(f"{name} {value / GIB:.1f}" for name, value in self.parts().items())
        return f"{max(0.0, self.peak) / GIB:.1f} GiB ({parts})"


def features(shape: ModelShape, *, micro_batch_size: int, max_length: int, max_prompt_length: int,
             personalized: bool = True, alpha: float = 0.5, gradient_checkpointing: bool = False
             ) -> tuple[float, float, float]:
    """(per-token, attention, logits) bytes of one worst-case micro-batch, before the fitted factors."""
    terms = 2 if personalized and 0.0 < alpha < 1.0 else 1
    sequences = micro_batch_size * 2 * terms
    tokens = sequences * max_length
    per_layer_token = (7 * shape.hidden + 4 * shape.intermediate) * FLOAT
    if gradient_checkpointing:  # each layer's input, plus one layer's tensors at a time
        per_token = tokens * (shape.layers * shape.hidden * FLOAT + per_layer_token)
        attention = tokens * max_length * shape.heads * FLOAT
    else:
        per_token = tokens * shape.layers * per_layer_token
        attention = tokens * max_length * shape.layers * shape.heads * FLOAT
    logits = sequences * max(1, max_length - max_prompt_length) * shape.vocab * FLOAT
    return per_token, attention, logits


def estimate(shape: ModelShape, *, micro_batch_size: int, max_length: int, max_prompt_length: int,
             personalized: bool = True, alpha: float = 0.5, gradient_checkpointing: bool = False,
             bf16: bool = False) -> MemoryEstimate:
    per_token, attention, logits = features(
        shape, micro_batch_size=micro_batch_size, max_length=max_length, max_prompt_length=max_prompt_length,
        personalized=personalized, alpha=alpha, gradient_checkpointing=gradient_checkpointing)
    scale = 0.5 if bf16 else 1.0
    factor = CHECKPOINTED if gradient_checkpointing else PER_TOKEN
    return MemoryEstimate(weights=shape.params * FLOAT, per_token=factor * per_token * scale,
                          attention=ATTENTION * attention * scale, logits=LOGITS * logits * scale)


def estimate_config(shape: ModelShape, config) -> MemoryEstimate:
    """The estimate for a TrainConfig (or anything with its field names)."""
    return estimate(shape, micro_batch_size=config.micro_batch_size, max_length=config.max_length,
                    max_prompt_length=config.max_prompt_length, personalized=config.user_model != "none",
                    alpha=config.alpha, gradient_checkpointing=getattr(config, "gradient_checkpointing", False),
                    bf16=bool(config.bf16))
