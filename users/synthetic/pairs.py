"""Preference pairs made by synthetic people: template candidates that differ in one style, or replies a model
wrote, each rated by the person's hidden rule; their best against their worst."""

from __future__ import annotations

import random
from typing import Callable

from trainer.core.data import Pair
from users.synthetic.replies import generate_reply
from users.synthetic.rule import DIMENSIONS, Persona, score


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
