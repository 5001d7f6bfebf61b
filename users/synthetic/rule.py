"""The hidden preference rule of a synthetic person, so the rule itself can be the judge.

Pure Python (no torch, no Django). Style dimensions people disagree on (each with
a steering instruction per pole, for making a real model write that way),
measurable features of a text in [-1, 1], and a person's rule: a 1-100 score from
those features, weighted by their preferences, plus noise.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Dimension:
    name: str
    poles: tuple[str, str]  # (low pole, high pole): the feature is -1 at the first, +1 at the second
    instructions: tuple[str, str]  # what to tell a real model to write at each pole


DIMENSIONS = {
    "length": Dimension("length", ("concise", "detailed"), (
        "Answer in one or two short sentences. No preamble, no elaboration.",
        "Answer thoroughly: several paragraphs covering background, details, examples and caveats.")),
    "register": Dimension("register", ("plain", "expert"), (
        "Use everyday words a twelve-year-old understands; avoid jargon.",
        "Write for a specialist: precise technical vocabulary, no simplification.")),
    "tone": Dimension("tone", ("matter-of-fact", "warm"), (
        "Be neutral and matter-of-fact: no greetings, no encouragement, no exclamation marks.",
        "Be warm and encouraging: acknowledge the person, show enthusiasm, end on a kind note.")),
    "format": Dimension("format", ("prose", "lists"), (
        "Write flowing prose paragraphs; never use bullet points.",
        "Structure the answer as a bulleted list, one point per line starting with '- '.")),
}


def style_instruction(dimension: str, pole: str) -> str:
    """The steering instruction for one pole of a dimension (for generating candidates with a real model)."""
    dim = DIMENSIONS[dimension]
    return dim.instructions[dim.poles.index(pole)]


_EXPERT = {"empirically", "framework", "heuristic", "heuristics", "trade-off", "trade-offs", "paradigm",
           "quantitatively", "mechanism", "mechanisms", "methodology", "parameters", "optimise", "systematic",
           "literature", "variance", "robustness", "baseline", "causal", "asymptotically", "constraints"}
_WARM = ("great question", "happy to help", "glad you asked", "you've got this", "hope this helps",
         "i'm rooting for you", "wonderful", "!")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-zA-Z'-]+", text.lower())


LENGTH_WORDS = (8.0, 300.0)  # the word counts the length feature maps to -1 and +1 (log scale in between)
LENGTH_WORDS_V1 = (40.0 / 3.0, 120.0)  # the first calibration: saturated inside the model's own reply lengths


def features(text: str, *, length_words: tuple[float, float] = LENGTH_WORDS) -> dict[str, float]:
    """Measurable style of a text, each in [-1, 1] (first pole -1, second pole +1).

    Length is calibrated so that replies a chat model writes (about 10 to 250
    words) stay distinguishable: a persona who wants detail still prefers 200
    words to 130. ``LENGTH_WORDS_V1`` is the earlier, narrower scale.
    """
    words = _words(text) or [""]
    lines = [ln for ln in text.splitlines() if ln.strip()] or [""]
    expert_share = sum(w in _EXPERT or len(w) >= 11 for w in words) / len(words)
    warm_hits = sum(text.lower().count(m) for m in _WARM)
    bullet_share = sum(ln.lstrip().startswith(("- ", "* ", "• ")) for ln in lines) / len(lines)
    clip = lambda x: max(-1.0, min(1.0, x))  # noqa: E731
    low, high = length_words
    centre, ratio = math.sqrt(low * high), math.sqrt(high / low)
    return {
        "length": clip(math.log(len(words) / centre) / math.log(ratio)),
        "register": clip(expert_share * 12.0 - 1.0),  # no jargon -> -1, one word in six -> +1
        "tone": clip(warm_hits / 2.0 - 1.0),
        "format": clip(bullet_share * 2.0 - 1.0),
    }


@dataclass(frozen=True)
class Persona:
    user_id: str
    group: str  # e.g. "length:detailed"; what evaluation reports per group
    prefs: dict[str, float] = field(default_factory=dict)  # dimension -> weight in [-1, 1]; sign picks the pole
    noise: float = 3.0  # std of the score noise

    def preferred_pole(self, dimension: str) -> str:
        return DIMENSIONS[dimension].poles[1 if self.prefs.get(dimension, 0.0) > 0 else 0]


def agreement(persona: Persona, text: str, *, length_words: tuple[float, float] = LENGTH_WORDS) -> float:
    """How well a text matches the persona's preferences, in [-1, 1]: the weighted mean of its features."""
    feats = features(text, length_words=length_words)
    total_weight = sum(abs(w) for w in persona.prefs.values()) or 1.0
    return sum(w * feats[d] for d, w in persona.prefs.items()) / total_weight


def score(persona: Persona, text: str, rng: random.Random | None = None) -> int:
    """The persona's 1-100 rating of a reply: 50 + 45 x weighted feature agreement + noise."""
    noise = (rng or random.Random()).gauss(0.0, persona.noise) if persona.noise else 0.0
    return int(max(1, min(100, round(50 + 45 * agreement(persona, text) + noise))))


def judge_prefers(persona: Persona, a: str, b: str, *, length_words: tuple[float, float] = LENGTH_WORDS) -> bool:
    """Does the hidden rule, without noise and before rounding to 1-100, rate reply ``a`` above ``b``?

    For judged win-rates; an exact tie (both replies saturate a feature) is not a preference.
    """
    return agreement(persona, a, length_words=length_words) > agreement(persona, b, length_words=length_words)


def judge_outcome(persona: Persona, ours: str, theirs: str) -> float:
    """The hidden rule (no noise) as a judge: 1 when it rates ``ours`` above ``theirs``, 0.5 when it rates them
    the same (both replies saturate the features it weighs), 0 when below. For win-rates with ties as half."""
    a, b = agreement(persona, ours), agreement(persona, theirs)
    return 1.0 if a > b else 0.5 if a == b else 0.0
