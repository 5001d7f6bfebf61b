"""A synthetic population whose preference rule is known, so the rule itself can be the judge.

Pure Python (no torch). Style dimensions people disagree on, personas drawn in
opposing groups (e.g. 70 % prefer one pole, 30 % the other, as in the paper's
TL;DR setup), a seeded template reply generator with controllable style, a
style instruction per pole for steering a real model, and the hidden scoring
rule: a 1-100 score from measurable features of the text plus noise.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from trainer.core.data import Pair


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


# --- the hidden rule -------------------------------------------------------------------------------

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


def sample_population(n_users: int, *, dimension: str = "length", majority_pole: str | None = None,
                      majority_share: float = 0.7, side_weight: float = 0.0, noise: float = 3.0,
                      seed: int = 0, prefix: str = "user") -> list[Persona]:
    """Two opposing groups on ``dimension``: round(majority_share * n) prefer ``majority_pole``, the rest the other.

    Other dimensions get random per-person weights of size ``side_weight``
    (0 = people only care about the contested dimension).
    """
    dim = DIMENSIONS[dimension]
    majority_pole = majority_pole or dim.poles[1]
    minority_pole = dim.poles[1 - dim.poles.index(majority_pole)]
    rng = random.Random(seed)
    n_major = int(round(majority_share * n_users))
    poles = [majority_pole] * n_major + [minority_pole] * (n_users - n_major)
    rng.shuffle(poles)
    people = []
    for i, pole in enumerate(poles):
        prefs = {dimension: 1.0 if dim.poles.index(pole) == 1 else -1.0}
        for other in DIMENSIONS:
            if other != dimension and side_weight:
                prefs[other] = rng.uniform(-side_weight, side_weight)
        people.append(Persona(f"{prefix}{i + 1}", f"{dimension}:{pole}", prefs, noise))
    return people


# --- the reply generator ---------------------------------------------------------------------------

_PLAIN = ["It helps to start small and keep things simple.", "Most people find it easier with a bit of practice.",
          "Try one step at a time and see what works.", "A good first move is to write down what you want.",
          "Ask someone you trust for a second opinion.", "Take a short break if you feel stuck."]
_TECH = ["Empirically, a systematic methodology outperforms ad hoc heuristics.",
         "The key trade-off is between robustness and variance in the outcome.",
         "Frame it quantitatively: define a baseline and the parameters you control.",
         "The literature describes the causal mechanism in terms of constraints and incentives.",
         "A structured framework makes the trade-offs explicit and comparable.",
         "Optimise against a clear baseline rather than a moving target."]
_WARM_OPEN = ["Great question! I'm happy to help.", "Glad you asked! This is a wonderful thing to explore."]
_WARM_CLOSE = ["Hope this helps, and you've got this!", "I'm rooting for you!"]


def _topic(prompt: str) -> str:
    words = re.findall(r"[\w'-]+", prompt)
    return " ".join(words[:6]) if words else "this"


def generate_reply(prompt: str, style: dict[str, str], rng: random.Random, *,
                   detailed_sentences: tuple[int, int] = (4, 5)) -> str:
    """A template reply to ``prompt`` with the given pole per dimension (missing dimensions: first pole).

    A detailed reply has ``detailed_sentences`` body sentences plus an example and a summary;
    a concise one has a single sentence.
    """
    pole = lambda d: style.get(d, DIMENSIONS[d].poles[0])  # noqa: E731
    pool = _TECH if pole("register") == "expert" else _PLAIN
    n = 1 if pole("length") == "concise" else rng.randint(*detailed_sentences)
    lead = f"On {_topic(prompt)}: " + rng.choice(pool)
    body = [lead] + [rng.choice(pool) for _ in range(n - 1)]
    if pole("length") == "detailed":
        body.insert(2, "For example, many people begin with a small experiment and adjust from there.")
        body.append("In summary, the details matter, so weigh each point against your own situation.")
    if pole("format") == "lists":
        text = "\n".join("- " + s for s in body)
    else:
        text = " ".join(body)
    if pole("tone") == "warm":
        text = f"{rng.choice(_WARM_OPEN)}\n{text}\n{rng.choice(_WARM_CLOSE)}"
    return text


def load_prompts(path: str | Path) -> list[str]:
    """Prompts from a JSONL file with a "prompt" field (e.g. the PRISM opening prompts)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["prompt"] for line in fh if line.strip()]


# The 115 real PRISM opening prompts, shipped with the app (users/data, CC-BY-4.0).
PRISM_PROMPTS = Path(__file__).resolve().parents[2] / "users" / "data" / "opening_prompts.jsonl"
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


def make_pairs(personas: list[Persona], prompts: list[str], *, conversations_per_user: int,
               vary: tuple[str, ...] = ("length",), seed: int = 0, system: str | None = None,
               detailed_sentences: tuple[int, int] = (4, 5),
               writer: Callable[[str, dict[str, str], random.Random], str] | None = None) -> list[Pair]:
    """One single-turn conversation per (user, sampled prompt): two candidates that differ on ``vary``.

    Dimensions not in ``vary`` get the same random pole in both candidates, so
    the pair isolates the contested style. Ties under the hidden rule are skipped.
    ``writer(prompt, style, rng)`` writes a candidate (default: the template
    generator), e.g. a lookup of replies a real model wrote with each style's instruction.
    """
    if writer is None:
        def writer(prompt, style, rng):
            return generate_reply(prompt, style, rng, detailed_sentences=detailed_sentences)
    rng = random.Random(seed)
    pairs = []
    for persona in personas:
        for c in range(conversations_per_user):
            prompt = rng.choice(prompts)
            shared = {d: rng.choice(DIMENSIONS[d].poles) for d in DIMENSIONS if d not in vary}
            styles = [{**shared, **{d: DIMENSIONS[d].poles[k] for d in vary}} for k in (0, 1)]
            pair = _best_against_worst(persona, c, system, prompt, [writer(prompt, s, rng) for s in styles], rng)
            if pair:
                pairs.append(pair)
    return pairs


def _best_against_worst(persona: Persona, c: int, system: str | None, prompt: str, replies: list[str],
                        rng: random.Random) -> Pair | None:
    """The persona rates every reply 1-100 (in order, noise from ``rng``); their best against their worst
    as conversation ``c``'s single-turn pair, or None where those two ratings tie."""
    rated = sorted(((score(persona, r, rng), r) for r in replies), key=lambda sr: sr[0])
    (low, worst), (high, best) = rated[0], rated[-1]
    if high == low:
        return None
    return Pair(user_id=persona.user_id, conversation_id=f"{persona.user_id}-c{c}", turn=0,
                prompt=([{"role": "system", "content": system}] if system else [])
                + [{"role": "user", "content": prompt}],
                chosen=[{"role": "assistant", "content": best}], rejected=[{"role": "assistant", "content": worst}],
                score_chosen=high, score_rejected=low, extra={"group": persona.group})


def make_rated_pairs(personas: list[Persona], candidates: dict[str, list[str]], *, conversations_per_user: int,
                     seed: int = 0, system: str | None = None) -> list[Pair]:
    """PRISM-style pairs from replies a model wrote: per (user, sampled prompt) the user rates every candidate
    reply 1-100 (hidden rule plus noise) and the best and the worst rated become chosen and rejected.

    ``candidates`` maps each prompt to its replies (at least two), e.g. several
    samples of the base model: the pairs then lie on the model's own
    distribution, as collected data does. A conversation whose best and worst
    ratings tie is skipped.
    """
    if any(len(replies) < 2 for replies in candidates.values()):
        raise ValueError("every prompt needs at least two candidate replies to rate")
    prompts = sorted(candidates)
    rng = random.Random(seed)
    pairs = []
    for persona in personas:
        for c in range(conversations_per_user):
            prompt = rng.choice(prompts)
            pair = _best_against_worst(persona, c, system, prompt, candidates[prompt], rng)
            if pair:
                pairs.append(pair)
    return pairs


def judge_prefers(persona: Persona, a: str, b: str, *, length_words: tuple[float, float] = LENGTH_WORDS) -> bool:
    """Does the hidden rule, without noise and before rounding to 1-100, rate reply ``a`` above ``b``?

    For judged win-rates; an exact tie (both replies saturate a feature) is not a preference.
    """
    return agreement(persona, a, length_words=length_words) > agreement(persona, b, length_words=length_words)
