"""A saved version as a folder the field's tools load without this project.

    adapter_config.json, adapter_model.safetensors   the shared LoRA, a standard PEFT adapter
    user_vectors.safetensors                          "vectors": (people + 1, T, H), each person's soft prompt
                                                      (row 0: the generic vectors, for anyone else)
    users.json                                        pseudonym -> row (``pseudonym`` of each person's id)
    tokenizer files, training_config.json, README.md  the model card: how to use it, settings, data, evaluation
    merged/                                           optional: the base weights with the LoRA folded in

A person's vectors go right after BOS, before the chat-templated prompt, as in training; the model card's
code does that with PEFT and transformers alone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

from trainer.core.artifacts import load_user_model, write_merged
from trainer.core.data import is_forgotten

BUNDLED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the bundled model's name on the Hugging Face hub

USAGE = '''```python
import json

import torch
from peft import AutoPeftModelForCausalLM
from safetensors.torch import load_file
from transformers import AutoTokenizer

FOLDER = "."  # this folder
model = AutoPeftModelForCausalLM.from_pretrained(FOLDER).eval()  # loads the base model named in adapter_config.json
tokenizer = AutoTokenizer.from_pretrained(FOLDER)
try:
    vectors = load_file(f"{FOLDER}/user_vectors.safetensors")["vectors"]  # (people + 1, T, H)
except FileNotFoundError:  # a plain-DPO version: no one's vectors
    vectors = None
rows = json.load(open(f"{FOLDER}/users.json"))  # pseudonym ("person-...") -> row; row 0 = the generic vectors


@torch.no_grad()
def prompt_embeddings(person, messages):
    """(1, L, H): BOS, the person's vectors (a pseudonym of users.json; anyone else gets row 0), the prompt."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    bos = tokenizer.bos_token_id
    if bos is not None and ids[:1] == [bos]:
        ids = ids[1:]  # BOS comes once, before the person's vectors
    embed = model.get_input_embeddings()
    parts = [embed(torch.tensor([bos]))] if bos is not None else []
    if vectors is not None:
        parts.append(vectors[rows.get(person, 0)].to(embed.weight.dtype))
    parts.append(embed(torch.tensor(ids)))
    return torch.cat(parts).unsqueeze(0)


@torch.no_grad()
def reply(person, messages, max_new_tokens=64):
    """The greedy reply to a chat ``messages`` for ``person``."""
    inputs = prompt_embeddings(person, messages)
    out = model.generate(inputs_embeds=inputs, attention_mask=torch.ones(inputs.shape[:2], dtype=torch.long),
                         max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0], skip_special_tokens=True)
```'''


def person_vectors(version: Path) -> torch.Tensor | None:
    """(people + 1, T, H) soft prompts of every row of the version's user model; None for plain DPO."""
    user_model = load_user_model(version)
    if user_model is None:
        return None
    with torch.no_grad():
        return user_model(torch.arange(user_model.n_users + 1)).float().contiguous()


def export_version(version: Path, out: Path, *, base_folder: str, base_model: str, card: str,
                   pseudonym: Callable[[str], str], merged: bool = False) -> Path:
    """Write ``version`` (a saved run's model folder) to ``out`` as described above. ``base_folder``: the base
    model here (its tokenizer, and the weights to merge into); ``base_model``: the name the adapter records
    for its base (a hub id, or a folder); ``card``: the model card's Markdown; ``pseudonym``: a person's id
    in users.json from the id the version knows them by (required: no export carries the site's own ids).
    Written beside ``out`` and renamed into place: never half a folder."""
    version, out = Path(version), Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        config = json.loads((version / "adapter" / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = base_model
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2))
        shutil.copyfile(version / "adapter" / "adapter_model.safetensors", tmp / "adapter_model.safetensors")
        vectors = person_vectors(version)
        if vectors is not None:
            save_file({"vectors": vectors}, tmp / "user_vectors.safetensors",
                      metadata={"layout": "row 0: generic; rows 1..N: users.json", "placement": "after BOS"})
        index = json.loads((version / "users.json").read_text())["users"]
        kept = {person: row for person, row in index.items() if not is_forgotten(person)}
        rows = {pseudonym(person): row for person, row in kept.items()}
        if len(rows) != len(kept):
            raise ValueError("two people of this version share a pseudonym: export refused")
        (tmp / "users.json").write_text(json.dumps(rows, indent=2))
        shutil.copyfile(version / "config.json", tmp / "training_config.json")
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(base_folder).save_pretrained(tmp)
        (tmp / "README.md").write_text(card)
        if merged:
            shutil.copytree(write_merged(version, base_folder), tmp / "merged")
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
