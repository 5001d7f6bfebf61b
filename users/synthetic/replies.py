"""Template replies with a chosen style: seeded, instant, and distinguishable by the rule's features."""

from __future__ import annotations

import itertools
import random
import re

from users.synthetic.rule import DIMENSIONS

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


def contrasting_styles(rng: random.Random, contested: str, n: int) -> list[dict[str, str]]:
    """n distinct styles (a pole per dimension); both poles of each contested dimension ("length", or several
    joined by "+") appear, as evenly as n allows: with two contested and four styles, each combination once."""
    combos = [dict(zip(DIMENSIONS, poles))
              for poles in itertools.product(*(d.poles for d in DIMENSIONS.values()))]
    names = contested.split("+")
    picked = []
    for i in range(n):
        wanted = {name: DIMENSIONS[name].poles[(i >> k) % 2] for k, name in enumerate(names)}
        options = [c for c in combos if all(c[d] == p for d, p in wanted.items()) and c not in picked]
        picked.append(rng.choice(options))
    return picked
