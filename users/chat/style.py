"""The side panel's "why it behaves so": reply style in numbers and the person's place on the user map.

Pure functions of lists and dicts (no database), so they are tested on literal values.
"""

from __future__ import annotations

import math
import re


def _syllables(word: str) -> int:
    groups = re.findall(r"[aeiouy]+", word.lower())
    return max(1, len(groups) - (1 if word.lower().endswith("e") and len(groups) > 1 else 0))


def text_style(texts: list[str]) -> dict | None:
    """Average length in words and a reading-level proxy (Flesch–Kincaid grade) over ``texts``."""
    texts = [t for t in texts if t.strip()]
    if not texts:
        return None
    words = [re.findall(r"[A-Za-z']+", t) for t in texts]
    n_words = sum(len(w) for w in words) or 1
    sentences = sum(max(1, len(re.findall(r"[.!?]+", t))) for t in texts)
    syllables = sum(_syllables(x) for w in words for x in w)
    grade = 0.39 * n_words / sentences + 11.8 * syllables / n_words - 15.59
    return {"n": len(texts), "words": round(n_words / len(texts), 1), "grade": round(grade, 1)}


def nearest_on_map(user_map: list[dict], user_id: str, k: int = 3) -> tuple[dict | None, list[dict]]:
    """The person's point on the user map and their k nearest neighbours (generic row excluded)."""
    me = next((p for p in user_map if p.get("user_id") == user_id and not p.get("generic")), None)
    if me is None:
        return None, []
    others = [p for p in user_map if p is not me and not p.get("generic")]
    ranked = sorted(others, key=lambda p: math.dist((p["x"], p["y"]), (me["x"], me["y"])))
    return me, [{**p, "distance": round(math.dist((p["x"], p["y"]), (me["x"], me["y"])), 3)} for p in ranked[:k]]


def map_points(user_map: list[dict], me: dict | None, neighbours: list[dict], *, named: bool) -> list[dict]:
    """Points scaled into a 0..100 box for a small SVG; the person and neighbours flagged.

    Only ``named`` maps (staff's) label points with people's ids; a participant's labels
    their own point "you" and leaves everyone else anonymous.
    """
    if not user_map:
        return []
    xs, ys = [p["x"] for p in user_map], [p["y"] for p in user_map]
    span = lambda v: (min(v), (max(v) - min(v)) or 1.0)  # noqa: E731
    (x0, dx), (y0, dy) = span(xs), span(ys)
    near = {p["user_id"] for p in neighbours}
    return [{"x": round(5 + 90 * (p["x"] - x0) / dx, 1), "y": round(95 - 90 * (p["y"] - y0) / dy, 1),
             "me": me is not None and p is me, "near": p["user_id"] in near, "generic": p.get("generic", False),
             "label": p["user_id"] if named else ("you" if me is not None and p is me else "")} for p in user_map]
