"""A trained run on disk, and back: what generation and evaluation load.

    OUT/
      adapter/               peft LoRA adapter (adapter_config.json + safetensors)
      user_model.safetensors the user model's tensors (absent for plain DPO)
      users.json             user id -> row (row 0 = the generic user)
      config.json            the TrainConfig of the run
      metrics.json           training history, diagnostics, evaluation, anything the caller adds
      run.json               base model path, user-model kind and sizes
      merged/                the LoRA folded into the base weights, with the tokenizer: a plain
                             transformers folder for an engine that cannot take our adapter
                             (vLLM); written on first need by ``write_merged``, kept with the run

Written to a temporary folder next to OUT and renamed into place, so OUT is
either the complete previous version or the complete new one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from trainer.core.config import TrainConfig
from trainer.core.data import FORGOTTEN
from trainer.core.loop import BUILDING, load_base
from trainer.core.policy import PreferenceModel
from trainer.core.usermodel import ClusterUserModel, IndividualUserModel, UserIndex


def save_run(out: Path, core: PreferenceModel, user_index: UserIndex, config: TrainConfig, *, base_model: str,
             metrics: dict | None = None, files: dict[str, Callable[[Path], None]] | None = None) -> Path:
    """Write the run; ``files`` maps more file names to functions that write them (inside the same swap)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        core.lm.save_pretrained(tmp / "adapter")
        info = {"base_model": str(base_model), "user_model": None}
        if core.user_model is not None:
            um = core.user_model
            save_file({k: v.detach().cpu().contiguous() for k, v in um.state_dict().items()},
                      tmp / "user_model.safetensors")
            info["user_model"] = {"kind": um.kind, "n_users": um.n_users, "n_tokens": um.n_tokens,
                                  "hidden": um.hidden, "n_clusters": getattr(um, "components", torch.empty(0)).shape[0]}
        (tmp / "users.json").write_text(json.dumps(user_index.to_json(), indent=2))
        config.save(tmp / "config.json")
        (tmp / "metrics.json").write_text(json.dumps(metrics or {}, indent=2, default=str))
        (tmp / "run.json").write_text(json.dumps(info, indent=2))
        for name, write in (files or {}).items():
            write(tmp / name)
        old = None
        if out.exists():  # swap: the old version moves aside only once the new one is complete
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


MERGED = "merged"


@dataclass
class LoadedRun:
    model: PreferenceModel  # eval mode; model.lm is the LM to generate with (peft-wrapped unless merged)
    tokenizer: object
    user_index: UserIndex
    config: TrainConfig
    metrics: dict
    path: Path

    def soft_prompt(self, user_id: str | None) -> torch.Tensor | None:
        """(T_u, H) vectors for generation: the user's own, the generic ones for an unknown user, None for plain."""
        return soft_prompt(self.model.user_model, self.user_index, user_id)


@torch.no_grad()
def soft_prompt(user_model, user_index: UserIndex, user_id: str | None) -> torch.Tensor | None:
    """(T_u, H) vectors of ``user_id`` (the generic row for one the model does not know); None without a user
    model (plain DPO)."""
    if user_model is None:
        return None
    row = torch.tensor([user_index.row(user_id)], device=next(user_model.parameters()).device)
    return user_model(row)[0]


def load_user_model(path: Path):
    """The saved run's user model (eval mode, no gradients), or None for a plain-DPO run."""
    spec = json.loads((Path(path) / "run.json").read_text())["user_model"]
    if not spec:
        return None
    if spec["kind"] == "cluster":
        user_model = ClusterUserModel(spec["n_users"], spec["n_tokens"], spec["hidden"], n_clusters=spec["n_clusters"])
    else:
        user_model = IndividualUserModel(spec["n_users"], spec["n_tokens"], spec["hidden"])
    user_model.load_state_dict(load_file(Path(path) / "user_model.safetensors"))
    for p in user_model.parameters():
        p.requires_grad_(False)
    return user_model.eval()


def forget_person(path: Path, user_id: str) -> bool:
    """Remove a person from a saved version: their row of the user model becomes the generic user's (an
    individual model's offsets zeroed, a cluster model's mixture set to the generic one) and their id leaves
    ``users.json`` (the row keeps a placeholder name, so every other row and the version's loading stay as
    they were). Each file is replaced whole. False when the version does not know them."""
    path = Path(path)
    index_file, tensors_file = path / "users.json", path / "user_model.safetensors"
    if not index_file.is_file():
        return False
    index = json.loads(index_file.read_text())
    row = index["users"].get(user_id)
    if row is None:
        return False
    if tensors_file.is_file():
        tensors = load_file(tensors_file)
        if "offsets" in tensors:  # individual: (N, T, H), user row u at u - 1
            tensors["offsets"][row - 1] = 0.0
        if "weights" in tensors:  # cluster: (N + 1, K) mixture logits, row 0 the generic user's
            tensors["weights"][row] = tensors["weights"][0]
        tmp = tensors_file.with_suffix(".tmp")
        save_file(tensors, tmp)
        tmp.replace(tensors_file)
    index["users"] = {(FORGOTTEN.format(row=r) if u == user_id else u): r for u, r in index["users"].items()}
    tmp = index_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=2))
    tmp.replace(index_file)
    return True


def load_user_index(path: Path) -> UserIndex:
    return UserIndex.from_json(json.loads((Path(path) / "users.json").read_text()))


def load_run(path: Path, *, base_model: str | None = None, device="cpu", merge: bool = False) -> LoadedRun:
    """Load a saved run; ``merge`` folds the LoRA into the base weights (faster serving, no adapter switch)."""
    path = Path(path)
    info = json.loads((path / "run.json").read_text())
    config = TrainConfig.load(path / "config.json")
    with BUILDING:
        lm, tokenizer = load_base(base_model or info["base_model"])
        lm = PeftModel.from_pretrained(lm, path / "adapter")
        if merge:
            lm = lm.merge_and_unload()
        core = PreferenceModel(lm, load_user_model(path), tokenizer).to(device).eval()
    for p in core.parameters():
        p.requires_grad_(False)
    metrics = json.loads((path / "metrics.json").read_text())
    return LoadedRun(core, tokenizer, load_user_index(path), config, metrics, path)


def write_merged(path: Path, base_model: str) -> Path:
    """The run's ``merged/`` folder (base weights with the LoRA folded in, and the tokenizer), written once.

    Written into a temporary folder and renamed into place, under a file lock, so any number of processes may
    ask at once: one writes, the others wait and find it; a process killed half-way leaves no ``merged/``.
    """
    path = Path(path)
    target = path / MERGED
    if (target / "config.json").is_file():
        return target
    with open(path / ".merged.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():  # another process wrote it while this one waited
            return target
        with BUILDING:
            lm, tokenizer = load_base(base_model)
            lm = PeftModel.from_pretrained(lm, path / "adapter").merge_and_unload()
        tmp = Path(tempfile.mkdtemp(prefix=f".{MERGED}-", dir=path))
        try:
            lm.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            shutil.rmtree(target, ignore_errors=True)  # a folder without config.json: never complete
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def input_embedding(folder: Path) -> torch.Tensor:
    """(V, H) input embedding matrix of a transformers model folder, read from its safetensors files alone
    (a few hundred MB, not the whole model); loads the model only when no such tensor is found."""
    folder = Path(folder)
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(file, framework="pt") as handle:
            for key in handle.keys():
                if key.endswith("embed_tokens.weight") or key.endswith("wte.weight"):
                    return handle.get_tensor(key)
    from transformers import AutoModelForCausalLM

    with BUILDING:
        model = AutoModelForCausalLM.from_pretrained(folder)
    return model.get_input_embeddings().weight.detach().clone()


def save_vectors(target: Path, core: PreferenceModel, row: int, metadata: dict[str, str]) -> Path:
    """One person's (T, H) vectors (their row of the user model) as a safetensors file, written beside and
    renamed into place: a reader sees the old file or the new one, never half of one."""
    with torch.no_grad():
        vectors = core.user_model(torch.tensor([row]))[0].detach().cpu().contiguous()  # (T, H)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".fit-", suffix=".tmp")
    os.close(fd)
    try:
        save_file({"vectors": vectors}, tmp, metadata=metadata)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def base_model_here(path: Path, fallback: Callable[[], str] | None = None) -> str | None:
    """The base model a saved run loads on, here: the one it recorded, or ``fallback()`` when that was a folder
    that is not on this machine (trained elsewhere); None when it is gone and there is no fallback."""
    recorded = json.loads((Path(path) / "run.json").read_text())["base_model"]
    if recorded.startswith(("/", ".")) and not Path(recorded).exists():
        return fallback() if fallback is not None else None
    return recorded
