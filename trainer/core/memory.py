"""Peak memory of a training run, estimated before it starts from the model's shape and the run's settings.

Pure arithmetic on the model folder's ``config.json`` (no torch), so the web
process can say whether a run fits before a worker loads anything.

    peak = base + fp32 weights + activations of one micro-batch (forward and backward)

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
The factors are kept per kind of device. A CPU's were fitted by least squares (relative errors) to
the peaks ``python -m bench memory`` measured on SmolLM2-135M in fp32. A GPU's are fitted the same way
by ``python -m bench gpu --fit-memory`` from the peaks it measured there (or later, from its saved table, by
``python -m bench gpu --fit-from gpu-DEVICE.json``), and kept in ``memory_factors.json`` beside this module
under the GPU's name (``nvidia-smi``'s); a GPU without an entry is estimated with the CPU's factors, an
uncalibrated guess, and says so. The CPU's factors are the constant ``CPU`` below and never read from the file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path

FLOAT = 4  # bytes of an fp32 number
GIB = 1024 ** 3

FACTORS_FILE = Path(__file__).with_name("memory_factors.json")  # a GPU's fitted factors, by its name


@dataclass(frozen=True)
class Factors:
    """What one kind of device keeps beyond the features' nominal bytes."""
    base: float  # bytes resident when training starts beyond the weights' nominal size
    per_token: float
    attention: float
    logits: float
    checkpointed: float  # the per-token factor with gradient checkpointing
    source: str  # where they come from, for the pages that show an estimate

    @property
    def calibrated(self) -> bool:
        return not self.source.startswith("uncalibrated")


# Fitted by `python -m bench memory --fit` on SmolLM2-135M, fp32, 2-core CPU. The base is negative here, as the
# weights are read from memory-mapped safetensors and not every page is resident. The attention factor came out
# 0: torch's CPU attention does not keep the (length x length) scores. The checkpointed factor was fitted from
# the one configuration measured with it.
CPU = Factors(base=-0.095 * GIB, per_token=1.980, attention=0.0, logits=0.235, checkpointed=5.67,
              source="fitted to SmolLM2-135M's peaks on a 2-core CPU (python -m bench memory)")


def device_factors() -> dict[str, Factors]:
    """The GPUs' fitted factors, by the GPU's name; empty while none was measured. Read once per change of the
    file: the start form's preview asks for estimates on every poll."""
    if not FACTORS_FILE.is_file():
        return {}
    return _read_factors(FACTORS_FILE, FACTORS_FILE.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_factors(path: Path, mtime_ns: int) -> dict[str, Factors]:
    return {name: Factors(**values) for name, values in json.loads(path.read_text()).items()}


def factors_for(device_kind: str | None = None) -> Factors:
    """The factors of a kind of device: "cpu" (or None), or a GPU's name as nvidia-smi gives it."""
    if not device_kind or device_kind == "cpu":
        return CPU
    fitted = device_factors()
    if device_kind in fitted:
        return fitted[device_kind]
    return dataclasses.replace(CPU, source=f"uncalibrated for {device_kind}: the CPU's factors (run python -m bench "
                                           "gpu --fit-memory there, or --fit-from its table)")


def fit_factors(rows: list[tuple[ModelShape, dict, dict]], source: str) -> Factors:
    """Factors fitted to measured peaks: ``rows`` of (shape, the estimate's keyword arguments, {"before": bytes
    resident before the step, "peak": bytes at its peak}). Least squares on relative errors, as a peak's share
    matters more than its bytes; rows with gradient checkpointing fit its own per-token factor."""
    import numpy as np

    base = float(np.mean([m["before"] - shape.params * FLOAT for shape, _, m in rows]))
    X, y = [], []
    for shape, kwargs, measured in rows:
        per_token, attention, logits = features(shape, **{k: v for k, v in kwargs.items() if k != "bf16"})
        scale = 0.5 if kwargs.get("bf16") else 1.0
        checkpointing = kwargs.get("gradient_checkpointing", False)
        X.append([0.0 if checkpointing else per_token * scale, per_token * scale if checkpointing else 0.0,
                  attention * scale, logits * scale])
        y.append(measured["peak"] - measured["before"])
    X, y = np.array(X), np.array(y, dtype=float)
    fitted = [CPU.per_token, CPU.checkpointed, CPU.attention, CPU.logits]  # a column no row informs keeps the CPU's
    used = [i for i in range(X.shape[1]) if X[:, i].any()]
    solved, *_ = np.linalg.lstsq(X[:, used] / y[:, None], np.ones_like(y), rcond=None)
    for i, value in zip(used, solved):
        fitted[i] = max(0.0, float(value))
    per_token, checkpointed, attention, logits = fitted
    return Factors(base=base, per_token=per_token, attention=attention, logits=logits, checkpointed=checkpointed,
                   source=source)


def save_factors(device_kind: str, factors: Factors, path: Path | None = None) -> None:
    """Keep ``factors`` for ``device_kind`` beside the others (written whole, never half)."""
    if not device_kind or device_kind == "cpu":  # factors_for("cpu") is the constant CPU: an entry would go unread
        raise ValueError("a CPU's factors are memory.CPU (python -m bench memory --fit), not kept in the file")
    path = path or FACTORS_FILE
    kept = json.loads(path.read_text()) if path.is_file() else {}
    kept[device_kind] = dataclasses.asdict(factors)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


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
    factors: Factors = CPU

    @property
    def base(self) -> float:
        """Bytes resident beyond the weights' nominal size when training starts: the device's own."""
        return self.factors.base

    @property
    def activations(self) -> float:
        return self.per_token + self.attention + self.logits

    @property
    def peak(self) -> float:
        return self.base + self.weights + self.activations

    def parts(self) -> dict[str, float]:
        """The peak in bytes by what holds them, none negative, adding up to the peak. A negative base (the
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
             bf16: bool = False, device_kind: str | None = None, factors: Factors | None = None) -> MemoryEstimate:
    """The estimate with ``device_kind``'s kept factors, or with ``factors`` (a fit being judged) when given."""
    per_token, attention, logits = features(
        shape, micro_batch_size=micro_batch_size, max_length=max_length, max_prompt_length=max_prompt_length,
        personalized=personalized, alpha=alpha, gradient_checkpointing=gradient_checkpointing)
    scale = 0.5 if bf16 else 1.0
    f = factors or factors_for(device_kind)
    factor = f.checkpointed if gradient_checkpointing else f.per_token
    return MemoryEstimate(weights=shape.params * FLOAT, per_token=factor * per_token * scale,
                          attention=f.attention * attention * scale, logits=f.logits * logits * scale, factors=f)


def config_kwargs(config, device_kind: str | None = None) -> dict:
    """The estimate's keyword arguments for a TrainConfig (or anything with its field names) on a kind of
    device: bf16 left to the device (None) is bf16 on a GPU, as training does."""
    bf16 = config.bf16 if config.bf16 is not None else device_kind not in (None, "cpu")
    return dict(micro_batch_size=config.micro_batch_size, max_length=config.max_length,
                max_prompt_length=config.max_prompt_length, personalized=config.user_model != "none",
                alpha=config.alpha, gradient_checkpointing=getattr(config, "gradient_checkpointing", False),
                bf16=bool(bf16))


def estimate_config(shape: ModelShape, config, device_kind: str | None = None) -> MemoryEstimate:
    """The estimate for a TrainConfig on a kind of device ("cpu" or None, or a GPU's name)."""
    return estimate(shape, **config_kwargs(config, device_kind), device_kind=device_kind)
