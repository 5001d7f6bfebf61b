"""Models of a published shape with random weights: what a larger model costs in speed and memory, without it.

    python -m bench shapes [--shapes llama-1b,llama-8b,qwen-1.5b] [--device auto] [--out DIR] [--tokenizer DIR]
    python -m bench shapes --export-tokenizer DIR   (the bundled tokenizer alone, 4 MB: what a GPU machine needs)

A model's speed and memory depend on its shape (layers, widths, heads, vocabulary), not on the values of its
weights. Each architecture in ``bench/architectures/NAME.json`` (a published model's config) is built once with
random weights and the bundled model's tokenizer (its vocabulary sized to it), and saved as a normal transformers
folder under ``--out`` (default ``$DATA_DIR/shapes``): training, serving and vLLM load it like any other model.
``shape.json`` in the folder marks it as random weights: its figures are speed and memory only, never quality.

Weights are built on ``--device`` (a GPU when there is one: an 8B model initialises in seconds there) and written
in bf16, shards of 4 GB; a folder appears whole or not at all.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.figures import Figure, default_model

ARCHITECTURES = Path(__file__).parent / "architectures"
SMALLEST = ("llama-tiny", "qwen-tiny")  # what a CPU builds by default
LARGE = ("llama-8b", "qwen-1.5b", "llama-1b")  # largest first


def available() -> dict[str, dict]:
    """Every architecture written in the repository: name -> {"about", "config"}."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(ARCHITECTURES.glob("*.json"))}


def shapes_dir() -> Path:
    return Path(os.environ.get("DATA_DIR", "data")) / "shapes"


def marker(folder: Path) -> dict | None:
    """What ``shape.json`` says of a built folder; None when the folder is not a whole build."""
    path = Path(folder) / "shape.json"
    return json.loads(path.read_text()) if path.is_file() else None


def model_shape(name: str, vocab: int):
    """The memory estimate's ``ModelShape`` of architecture ``name`` with a vocabulary of ``vocab``, read from its
    config in the repository: what a built folder's config.json says, without building it."""
    from trainer.core.memory import ModelShape

    c = available()[name]["config"]
    return ModelShape(hidden=c["hidden_size"], intermediate=c["intermediate_size"], layers=c["num_hidden_layers"],
                      heads=c["num_attention_heads"], kv_heads=c.get("num_key_value_heads") or c["num_attention_heads"],
                      vocab=vocab, tied=bool(c.get("tie_word_embeddings")))


def params_of(name: str, vocab: int) -> int:
    """Parameters of architecture ``name`` with a vocabulary of ``vocab``, from its shape alone."""
    return model_shape(name, vocab).params


def build(name: str, out: Path | None = None, *, device: str = "auto", tokenizer_source: str | None = None,
          log=print) -> Path:
    """The folder of architecture ``name`` with random weights, built once (returned at once when it exists)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    shapes = available()
    if name not in shapes:
        raise SystemExit(f"No architecture called {name!r}: these are written in {ARCHITECTURES}: "
                         f"{', '.join(shapes)}.")
    target = (out or shapes_dir()) / name
    if marker(target):
        return target
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source or default_model())
    fields = dict(shapes[name]["config"])
    model_type = fields.pop("model_type")
    fields.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, torch_dtype="bfloat16")
    config = AutoConfig.for_model(model_type, **fields)
    started = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    log(f"{name}: {params / 1e9:.2f} B parameters built on {device} in {time.perf_counter() - started:.0f} s; "
        "writing them", flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # a build stopped half-way (no shape.json): start again
        shutil.rmtree(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True, max_shard_size="4GB")
        tokenizer.save_pretrained(tmp)
        (tmp / "shape.json").write_text(json.dumps({
            "shape": name, "about": shapes[name]["about"], "parameters": params, "random_weights": True,
            "note": "random weights: speed and memory only; its replies and accuracies mean nothing"}, indent=1))
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"{name}: written to {target} ({time.perf_counter() - started:.0f} s in all)", flush=True)
    return target


def main(argv=None) -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", help=f"comma-separated (default: {', '.join(LARGE)} with a GPU, "
                                     f"{', '.join(SMALLEST)} without); written: {', '.join(available())}")
    ap.add_argument("--device", default="auto", help="where the weights are initialised: auto, cpu or cuda")
    ap.add_argument("--out", type=Path, help="where the folders go (default: $DATA_DIR/shapes)")
    ap.add_argument("--tokenizer", help="a folder with the bundled tokenizer (default: the bundled model's)")
    ap.add_argument("--export-tokenizer", type=Path, metavar="DIR",
                    help="write the bundled tokenizer alone to DIR and stop (carry it to a machine without the model)")
    args = ap.parse_args(argv)
    import torch

    if args.export_tokenizer:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(default_model()).save_pretrained(args.export_tokenizer)
        print(f"the bundled tokenizer is in {args.export_tokenizer}", flush=True)
        return []

    names = args.shapes.split(",") if args.shapes else list(LARGE if torch.cuda.is_available() else SMALLEST)
    figures = []
    for name in names:
        started = time.perf_counter()
        folder = build(name, args.out, device=args.device, tokenizer_source=args.tokenizer)
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        figures.append(Figure("shapes", f"{name}: {marker(folder)['parameters'] / 1e6:,.0f} M parameters, random "
                              "weights", f"{folder} ({size / 2**30:.2f} GiB, {time.perf_counter() - started:.0f} s)"))
        print(f"{name}: {folder}", flush=True)
    return figures


if __name__ == "__main__":
    main()
