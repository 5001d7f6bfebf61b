"""Prompts for synthetic conversations: PRISM's real opening prompts, or a built-in few when the file is missing."""

from __future__ import annotations

import json
from pathlib import Path


def load_prompts(path: str | Path) -> list[str]:
    """Prompts from a JSONL file with a "prompt" field (e.g. the PRISM opening prompts)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["prompt"] for line in fh if line.strip()]


# The 115 real PRISM opening prompts, shipped with the app (users/prism/data, CC-BY-4.0).
PRISM_PROMPTS = Path(__file__).resolve().parents[1] / "prism" / "data" / "opening_prompts.jsonl"
SHORT_SYSTEM = "You are a helpful assistant."  # shorter than the model's default system prompt: cheaper sequences


def prompts_or_default(path: str | Path) -> list[str]:
    """The prompts in ``path``, or the built-in few when the file is missing (benchmarks run anywhere)."""
    try:
        return load_prompts(path)
    except OSError:
        return list(DEFAULT_PROMPTS)  # a copy: callers shuffle their list


DEFAULT_PROMPTS = ["How do I start running?", "Explain how vaccines work.", "What should I cook tonight?",
                   "How can I save money on groceries?", "Why is the sky blue?", "How do I learn a language?",
                   "What makes a good manager?", "How should I prepare for an interview?"]
