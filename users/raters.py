"""How carefully each person rated: the figures staff read on the raters page and the flags a run can leave out.

Pure Python (no Django): it works on the rated turns of each person, each turn its replies' texts and scores
and, for turns rated on this site, the seconds between the last reply finishing and the ratings being saved.

Per person:

- ratings, turns, the scores' mean, spread and histogram, and the share of turns with a tie;
- **seconds per turn** and **reading speed** (words shown per second before rating);
- **consistency**: do their own ratings follow one taste? The person's weights on the style features of
  ``users.synthetic.rule.features`` (length, register, tone, format) are fitted on all their turns but one,
  and the left-out turn's pairs predicted; the share predicted right, over every turn in turn. Someone who
  rates by a taste in style scores near 1, someone who rates at random near 0.5;
- **agreement with their group**: the share of their pairs that their group's mean weights (everyone else in
  their group; everyone, for people without one) order as they did.

Flags, for staff to look at (a run leaves flagged people out only when asked):

- ``one score``: at least 80 % of their ratings are one value;
- ``faster than reading``: a median reading speed over 20 words a second, on at least 3 timed turns;
- ``no pattern``: consistency no better than chance, on at least 12 independent comparisons (a turn of k rated
  replies gives k - 1): under 0.5 + 1.645 x 0.5 / sqrt(comparisons), what random ratings stay under 95 times
  in 100. Style is all the features see: a person who rates on content alone looks like this too, which is
  why a flag is a question for staff, not a verdict.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field

from users.synthetic.rule import features

DIMENSIONS = ("length", "register", "tone", "format")
ONE_SCORE_SHARE = 0.8
FASTEST_WORDS_PER_SECOND = 20.0
LEAST_TIMED_TURNS = 3
LEAST_COMPARISONS = 12
RIDGE = 0.1


@dataclass
class RatedTurn:
    texts: list[str]
    scores: list[int]
    seconds: float | None = None  # from the last reply finishing to the ratings being saved; None if unknown


@dataclass
class RaterQuality:
    person: str
    group: str | None
    ratings: int
    turns: int
    mean: float
    spread: float  # standard deviation of the scores
    histogram: list[int]  # ratings in 1-10, 11-20, ..., 91-100
    tie_share: float  # turns with two equal scores, of the turns with two or more rated replies
    timed_turns: int  # turns rated on this site, whose time is known
    seconds_per_turn: float | None
    words_per_second: float | None
    pairs: int  # within-turn pairs with different scores
    comparisons: int  # independent ones: k - 1 for a turn of k rated replies with two different scores
    consistency: float | None
    chance: float  # the consistency random ratings stay under 95 times in 100, for this many comparisons
    agreement: float | None
    flags: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list, repr=False)


def _vector(text: str) -> list[float]:
    found = features(text)
    return [found[d] for d in DIMENSIONS]


def _pairs(turn: RatedTurn, vectors: list[list[float]]) -> list[tuple[list[float], int]]:
    """(feature difference of the higher minus the lower rated, +1) for each pair of different scores."""
    found = []
    for i, (a, sa) in enumerate(zip(vectors, turn.scores)):
        for b, sb in zip(vectors[i + 1:], turn.scores[i + 1:]):
            if sa != sb:
                high, low = (a, b) if sa > sb else (b, a)
                found.append(([h - lo for h, lo in zip(high, low)], 1))
    return found


def _fit(differences: list[list[float]]) -> list[float]:
    """Weights w with w . d > 0 for the differences d (ridge least squares of w . d = 1), by normal equations."""
    k = len(DIMENSIONS)
    gram = [[RIDGE * (i == j) for j in range(k)] for i in range(k)]
    target = [0.0] * k
    for d in differences:
        for i in range(k):
            target[i] += d[i]
            for j in range(k):
                gram[i][j] += d[i] * d[j]
    return _solve(gram, target)


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the system is small and well conditioned by the ridge)."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col and m[col][col]:
                factor = m[r][col] / m[col][col]
                m[r] = [x - factor * y for x, y in zip(m[r], m[col])]
    return [m[i][n] / m[i][i] if m[i][i] else 0.0 for i in range(n)]


def _share_right(weights: list[float], differences: list[list[float]]) -> float:
    return sum(sum(w * x for w, x in zip(weights, d)) > 0 for d in differences) / len(differences)


def rater_quality(people: dict[str, tuple[str | None, list[RatedTurn]]]) -> list[RaterQuality]:
    """The figures and flags of each person: ``people`` maps a person to (their group or None, their turns)."""
    per_person = {}
    for person, (group, turns) in people.items():
        vectors = [[_vector(t) for t in turn.texts] for turn in turns]
        by_turn = [[d for d, _ in _pairs(turn, v)] for turn, v in zip(turns, vectors)]
        per_person[person] = (group, turns, vectors, by_turn, _fit([d for ds in by_turn for d in ds]))
    rows = []
    for person, (group, turns, vectors, by_turn, weights) in per_person.items():
        scores = [s for turn in turns for s in turn.scores]
        differences = [d for ds in by_turn for d in ds]
        right = [_share_right(_fit([d for j, ds in enumerate(by_turn) if j != i for d in ds]), ds) * len(ds)
                 for i, ds in enumerate(by_turn) if ds]
        consistency = sum(right) / len(differences) if differences and len(by_turn) > 1 else None
        others = [w for p, (g, *_, w) in per_person.items() if p != person and (g == group or group is None)]
        group_weights = [statistics.fmean(ws) for ws in zip(*others)] if others else None
        agreement = _share_right(group_weights, differences) if group_weights and differences else None
        timed = [(turn.seconds, sum(len(t.split()) for t in turn.texts)) for turn in turns
                 if turn.seconds is not None]
        speeds = [words / max(seconds, 0.1) for seconds, words in timed]
        rated_turns = [turn for turn in turns if len(turn.scores) > 1]
        comparisons = sum(len(turn.scores) - 1 for turn, ds in zip(turns, by_turn) if ds)
        row = RaterQuality(
            person=person, group=group, ratings=len(scores), turns=len(turns),
            mean=statistics.fmean(scores) if scores else 0.0,
            spread=statistics.pstdev(scores) if scores else 0.0,
            histogram=[sum(1 for s in scores if (s - 1) // 10 == b) for b in range(10)],
            tie_share=(sum(len(set(t.scores)) < len(t.scores) for t in rated_turns) / len(rated_turns)
                       if rated_turns else 0.0),
            timed_turns=len(timed), seconds_per_turn=statistics.median(s for s, _ in timed) if timed else None,
            words_per_second=statistics.median(speeds) if speeds else None,
            pairs=len(differences), comparisons=comparisons, consistency=consistency,
            chance=0.5 + 1.645 * 0.5 / math.sqrt(max(comparisons, 1)), agreement=agreement, weights=weights)
        row.flags = flags_of(row, scores)
        rows.append(row)
    return sorted(rows, key=lambda r: (not r.flags, r.person))


def flags_of(row: RaterQuality, scores: list[int]) -> list[str]:
    found = []
    if len(scores) >= 5 and Counter(scores).most_common(1)[0][1] >= ONE_SCORE_SHARE * len(scores):
        found.append("one score")
    if row.timed_turns >= LEAST_TIMED_TURNS and row.words_per_second > FASTEST_WORDS_PER_SECOND:
        found.append("faster than reading")
    if row.comparisons >= LEAST_COMPARISONS and row.consistency is not None and row.consistency < row.chance:
        found.append("no pattern")
    return found
