"""Settings read off the data a run is about to train on: the margin filter, the number of passes, the learning
rates and user-model size, and the evaluation's token budget. Pure Python (no Django, no torch): the start form
and the command line call the same rules, and each comes back with the plain-words reason it was chosen.

Every rule reads the *training* pairs only: the seen people's training conversations of the run's own seeded
split (``data.plan_split``), never a held-out conversation. The margin filter itself moves the split (a
conversation whose pairs all fall under it drops out), so ``choose`` looks for a margin that its own split's
training pairs choose again (``MARGIN_ROUNDS`` tries); when none settles, it keeps every pair rather than read
a margin off conversations the run may hold out.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from trainer.core.data import plan_split

# --- the margin filter ------------------------------------------------------------------------------------
MARGIN_BOUNDS = (1, 30)  # a valley is looked for under 30: a margin of 30 is a preference on any 1-100 slider
MARGIN_MIN_PAIRS = 30  # fewer training pairs than this: too few to tell noise from preference, all are kept
MARGIN_BIN = 10  # points per histogram bin
MARGIN_Z = 2.0  # how many standard deviations a valley must dip below both humps
MIN_HUMP = 5  # the preference hump holds at least this many pairs in one bin
MARGIN_ROUNDS = 4  # tries to find a margin whose own split's training pairs choose it again

# --- the number of passes ---------------------------------------------------------------------------------
PERSON_VISITS = 20  # a person with the median number of training pairs gives their vectors this many updates
MAX_PASSES = 8  # more passes over a few pairs overfit the shared adapter
BUDGET_SECONDS = {"cpu": 30 * 60, "gpu": 4 * 3600}  # the longest a run's training is planned to take

# --- learning rates and user-model size -------------------------------------------------------------------
FEW_PEOPLE = 10  # the rates below were measured with 10 people (python -m bench personalize), on ...
FEW_HIDDEN = 576  # ... the bundled SmolLM2-135M (hidden size 576): the cpu preset's rates
FEW_RATES = {"lr_lora": 1e-3, "lr_user": 8e-2}
# The user vectors' rate was chosen on a validation split (python -m bench ablate: 20 people, two contested
# dimensions with side tastes; the minority's validation pairs ranked at 77.8 % with 8.4e-2 against 55.6 % with
# the 2.1e-2 that interpolating by the number of people gave, the majority's at 81.9 % with both). A person's
# vectors learn only from their own pairs, so more people do not call for a smaller step: the rate holds up to
# USER_RATE_PEOPLE people and only then moves towards the paper's (measured up to 20).
USER_RATE_PEOPLE = 100
PRISM_PEOPLE = 1000  # PRISM-sized (about 1,400 seen people in the paper): the paper's rates
PAPER_RATES = {"lr_lora": 5e-5, "lr_user": 5e-5}
USER_TOKENS = 10  # T_u: the paper's value in every run, and the benchmark's
MAX_CLUSTERS = 10  # K: the paper's value on PRISM

# --- the evaluation's token budget ------------------------------------------------------------------------
TOKEN_QUANTILE = 0.9  # the budget fits nine in ten of the replies people chose
TOKEN_BOUNDS = (64, 512)
TOKEN_STEP = 16  # the budget is a multiple of 16 tokens
TOKEN_MIN_REPLIES = 10  # fewer chosen replies than this: the fixed budget
TOKEN_FALLBACK = 96  # the evaluation's fixed budget before it was read off the data
TOKEN_SAMPLE = 2000  # token lengths of at most this many chosen replies (evenly spread) are counted
CHARS_PER_TOKEN = 4  # the length estimate when the base model's tokenizer is not at hand


@dataclass(frozen=True)
class Choice:
    value: object
    reason: str  # why, in one plain sentence (without the value), for the form and the command line


# --- 1. the margin filter ---------------------------------------------------------------------------------

def margin_bins(margins: Iterable[float]) -> list[int]:
    """How many margins fall in each ``MARGIN_BIN``-point bin: 1-10, 11-20, ..., 91-100 (each bin holds one
    multiple of 10 and one of 5, the round numbers a slider's users favour)."""
    bins = [0] * (100 // MARGIN_BIN)
    for m in margins:
        if m >= 1:
            bins[min(len(bins) - 1, (math.ceil(m) - 1) // MARGIN_BIN)] += 1
    return bins


def min_margin_from_margins(margins: list[float]) -> Choice:
    """The margin filter from the score margins (chosen minus rejected, 1 or more) of the training pairs.

    Two replies a person finds equally good still get different scores, from rating noise alone: those pairs'
    margins pile up near 0 and thin out quickly. Pairs that express a preference make a second hump further
    out. Where both are present the margins' histogram (``margin_bins``) falls from the noise hump to a
    valley and rises again. A bin ``k`` (starting under ``MARGIN_BOUNDS[1]``) is such a valley when, with
    ``v`` its count, ``h`` the largest bin before it and ``p`` the largest after it (at least ``MIN_HUMP``),
    both ``h - v`` and ``p - v`` exceed ``MARGIN_Z`` standard deviations of a difference of Poisson counts
    (``MARGIN_Z * sqrt(h + v)`` and ``MARGIN_Z * sqrt(p + v)``). The filter is the middle of the emptiest
    such valley (the earliest on a tie): pairs under it are within the rating noise. A histogram that only
    falls (noise alone, or margins spread like an exponential), rises to a single hump, or dips by no more
    than chance has no margin that tells noise from preference: every pair is kept (1, the paper's rule:
    ties only are dropped); so too with fewer than ``MARGIN_MIN_PAIRS`` pairs.
    """
    low, high = MARGIN_BOUNDS
    usable = [m for m in margins if m >= 1]
    n = len(usable)
    if n < MARGIN_MIN_PAIRS:
        return Choice(low, "no training pairs with a score margin yet, so every pair is kept" if not n else
                      f"only {n} training pair{'s' if n != 1 else ''} with a score margin, too few to tell rating "
                      "noise from preferences, so every pair is kept")
    bins = margin_bins(usable)
    valley = None
    for k in range(1, min(len(bins) - 1, math.ceil(high / MARGIN_BIN))):
        h, v, p = max(bins[:k]), bins[k], max(bins[k + 1:])
        if (p >= MIN_HUMP and h - v > MARGIN_Z * math.sqrt(h + v) and p - v > MARGIN_Z * math.sqrt(p + v)
                and (valley is None or v < bins[valley])):
            valley = k
    if valley is None:
        return Choice(low, f"these people's {n} training margins show no separate hump of rating noise "
                           "near 0 (they thin out without a valley), so no margin tells noise from preference: "
                           "every pair is kept")
    first = valley * MARGIN_BIN + 1
    cut = max(low, min(high, first + MARGIN_BIN // 2))
    left_out = sum(m < cut for m in usable) / n
    return Choice(cut, f"pairs with a margin under {cut} are within these people's rating noise (their "
                       f"margins fall from a hump near 0 to a valley at {first}-{first + MARGIN_BIN - 1}, then "
                       f"rise again with the preferences): {left_out:.0%} of the {n} training pairs left out")


# --- 2. the number of passes ------------------------------------------------------------------------------

def passes_from_pairs(pairs_per_person: list[int], *, batch_size: int, seconds_per_step: float | None = None,
                      budget_seconds: float | None = None) -> tuple[Choice, int]:
    """Epochs (and the optimizer steps they make) from each seen person's number of training pairs.

    A person's vectors learn only from their own pairs, so the run passes over the pairs often enough that a
    person with the median number of training pairs gives their vectors at least ``PERSON_VISITS`` updates:
    ``passes = ceil(PERSON_VISITS / median)``, between 1 and ``MAX_PASSES`` (PRISM's people, with some twenty
    pairs each, get the paper's single epoch). Steps are ``ceil(pairs x passes / batch_size)``. When a step's
    time is known and the steps would take longer than ``budget_seconds``, the run is cut to the steps that
    fit (at least one) and the epochs to match.
    """
    counts = [c for c in pairs_per_person if c > 0]
    if not counts:
        return Choice(1.0, "no training pairs yet, so one pass"), 0
    total, median = sum(counts), statistics.median(counts)
    passes = max(1, min(MAX_PASSES, math.ceil(PERSON_VISITS / median)))
    steps = math.ceil(total * passes / batch_size)
    median_text = f"{median:g}"
    if seconds_per_step and budget_seconds and steps * seconds_per_step > budget_seconds:
        steps = max(1, int(budget_seconds // seconds_per_step))
        epochs = _epochs_for(steps, total, batch_size)
        return Choice(epochs, f"{steps} step{'s' if steps != 1 else ''} of {batch_size}, as many as "
                              f"fit in {budget_seconds / 60:.0f} minutes on this worker: each person's pairs seen "
                              f"about {epochs:.1f} times ({passes} would give the median person's "
                              f"{median_text} pairs {PERSON_VISITS} updates)"), steps
    times = "once" if passes == 1 else "twice" if passes == 2 else f"{passes} times"
    return Choice(float(passes), f"{steps} step{'s' if steps != 1 else ''} of {batch_size}: each person's "
                                 f"pairs seen {times}, so a person with the median {median_text} training pairs "
                                 f"gives their vectors about {round(passes * median)} updates"), steps


def _epochs_for(steps: int, pairs: int, batch_size: int) -> float:
    """The shortest epochs, to 4 significant digits, that make ``steps`` steps (``TrainConfig.total_steps``)."""
    exact = steps * batch_size / pairs
    digits = 4 - int(math.floor(math.log10(exact)))
    epochs = round(exact, digits)
    while math.ceil(pairs * epochs / batch_size) > steps:
        epochs -= 10 ** -digits
    return round(epochs, digits)


# --- 3. learning rates and user-model size ----------------------------------------------------------------

def learning_rates(people: int, hidden: int | None = None) -> dict[str, Choice]:
    """The shared adapter's and the user vectors' learning rates from the number of seen people.

    Two measured points: with ``FEW_PEOPLE`` people on the bundled 135M model the rates in ``FEW_RATES``
    worked (the user vectors' chosen on a validation split with 20); on PRISM (``PRISM_PEOPLE`` or more) the
    paper's ``PAPER_RATES``. In between, geometric interpolation in the number of people:
    ``rate = few^(1-t) x paper^t`` with ``t = log(people / start) / log(PRISM_PEOPLE / start)`` clipped to
    [0, 1], where ``start`` is ``FEW_PEOPLE`` for the shared adapter and ``USER_RATE_PEOPLE`` for the user
    vectors (each learns from its own person's pairs alone, however many people there are). A model wider than
    the one measured (hidden size over ``FEW_HIDDEN``) scales the few-people rates by
    ``sqrt(FEW_HIDDEN / hidden)`` (wider layers take smaller steps); the paper's rates stay as they are.
    Rounded to two significant digits.
    """
    if people <= 0:
        return {}
    width = min(1.0, math.sqrt(FEW_HIDDEN / hidden)) if hidden else 1.0
    chosen = {}
    for name, whose, start in (("lr_lora", "the shared adapter's", FEW_PEOPLE),
                               ("lr_user", "the user vectors'", USER_RATE_PEOPLE)):
        t = min(1.0, max(0.0, math.log(people / start) / math.log(PRISM_PEOPLE / start)))
        rate = float(f"{(FEW_RATES[name] * width) ** (1 - t) * PAPER_RATES[name] ** t:.2g}")
        scaled = f", scaled for a model of hidden size {hidden}" if width < 1.0 else ""
        if t >= 1.0:
            why = f"the paper's rate: {people} people is PRISM-sized"
        elif t <= 0.0 and name == "lr_user":
            why = (f"{whose} rate chosen on a validation split on the bundled 135M model{scaled}: each person's "
                   f"vectors learn from their own pairs only, so it holds up to {USER_RATE_PEOPLE} people "
                   f"({people} here)")
        elif t <= 0.0:
            why = f"{whose} rate measured with {FEW_PEOPLE} people on the bundled 135M model ({people} here){scaled}"
        else:
            why = (f"{whose} rate for {people} people: between the one for {start} or fewer and the paper's "
                   f"with {PRISM_PEOPLE} or more")
        chosen[name] = Choice(rate, why)
    return chosen


def user_model_size(people: int) -> dict[str, Choice]:
    """T_u stays the paper's ``USER_TOKENS``; K, the cluster model's shared components, is one per two seen
    people (each component is shared), at least 1 and at most the paper's ``MAX_CLUSTERS``."""
    if people <= 0:
        return {}
    k = max(1, min(MAX_CLUSTERS, people // 2))
    return {"n_user_tokens": Choice(USER_TOKENS, "the paper's number of vectors per person"),
            "n_clusters": Choice(k, f"one shared component per two of the {people} people"
                                    + (f", at most the paper's {MAX_CLUSTERS}" if k == MAX_CLUSTERS else ""))}


# --- 4. the evaluation's token budget ---------------------------------------------------------------------

def token_budget(lengths: list[int]) -> Choice:
    """New tokens per reply the run's evaluation generates, from the token lengths of the replies people chose
    in the training pairs: their ``TOKEN_QUANTILE`` quantile (nearest rank), rounded up to a multiple of
    ``TOKEN_STEP`` and bounded to ``TOKEN_BOUNDS``, so a reply as long as those people chose is not cut (a cap
    that cuts every reply to one length hides a preference for length). Fewer than ``TOKEN_MIN_REPLIES``
    replies: the fixed ``TOKEN_FALLBACK``."""
    n = len(lengths)
    if n < TOKEN_MIN_REPLIES:
        return Choice(TOKEN_FALLBACK, "no chosen replies to measure yet, so the fixed budget" if not n else
                      f"only {n} chosen repl{'ies' if n != 1 else 'y'} to measure, so the fixed budget")
    ranked = sorted(lengths)
    quantile = ranked[math.ceil(TOKEN_QUANTILE * n) - 1]
    low, high = TOKEN_BOUNDS
    budget = max(low, min(high, math.ceil(quantile / TOKEN_STEP) * TOKEN_STEP))
    bound = f"the most allowed ({high}): " if budget == high and quantile > high else ""
    return Choice(budget, f"{bound}9 in 10 of the {n} replies these people chose are {quantile} tokens "
                          f"or shorter (the longest {ranked[-1]}), so an evaluated reply has room to be as long")


def token_lengths(texts: list[str], model_path: str | Path | None) -> tuple[list[int], bool]:
    """Token lengths of ``texts`` with the base model's tokenizer (its ``tokenizer.json``, through the
    ``tokenizers`` library: no torch), or, without one, ``len / CHARS_PER_TOKEN``; and whether they were
    counted by the tokenizer."""
    path = Path(model_path) / "tokenizer.json" if model_path else None
    if path is not None and path.is_file():
        try:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(path))
            return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)], True
        except Exception:  # an unreadable tokenizer file: the estimate below
            pass
    return [math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts], False


# --- all of them, on a run's data ------------------------------------------------------------------------

@dataclass(frozen=True)
class PairFact:
    """What the rules need of one pair: whose, which conversation, its margin (None: no scores, always kept)
    and a key of its chosen reply (its text, or a database id) for measuring its length."""

    user: object
    conversation: object
    margin: float | None
    chosen: object


@dataclass
class Chosen:
    values: dict = field(default_factory=dict)  # setting -> value
    reasons: dict = field(default_factory=dict)  # setting -> why, in one sentence
    train_pairs: int = 0
    people: int = 0
    steps: int = 0

    def explained(self) -> dict:
        """setting -> (value, reason), for the start form."""
        return {name: (self.values[name], self.reasons[name]) for name in self.reasons}

    def lines(self) -> list[str]:
        """The choices as the command line prints them."""
        return [f"  {name}={self.values[name]:g}: {self.reasons[name]}" for name in self.reasons]


def keys_at(facts: list[PairFact], margin: float, min_pairs: int = 1) -> dict[tuple, int]:
    """Pairs per (user, conversation) at a margin filter, in the order the facts come, without the people left
    with fewer than ``min_pairs``: what ``plan_split`` plans the run's split on."""
    keyed: dict[tuple, int] = {}
    for f in facts:
        if f.margin is None or f.margin >= margin:
            keyed[(f.user, f.conversation)] = keyed.get((f.user, f.conversation), 0) + 1
    per_user: dict = {}
    for (user, _), n in keyed.items():
        per_user[user] = per_user.get(user, 0) + n
    return {key: n for key, n in keyed.items() if per_user[key[0]] >= min_pairs}


def choose(facts: list[PairFact], *, split: dict, batch_size: int, min_pairs: int = 1, hidden: int | None = None,
           seconds_per_step: float | None = None, budget_seconds: float | None = None,
           lengths: Callable[[list], list[int]] | None = None, given: dict | None = None,
           personalized: bool = True) -> Chosen:
    """Every rule above on a run's pairs: ``split`` holds ``plan_split``'s keyword arguments (fractions and
    seed); ``lengths`` measures chosen replies' token lengths from their keys; ``given`` holds settings a
    person set (a given ``min_margin`` is used, not chosen; the other given ones are not chosen)."""
    given = dict(given or {})
    chosen = Chosen()

    def training_keys(margin: float) -> set:
        return set(plan_split(keys_at(facts, margin, min_pairs), **split).train) if facts else set()

    if "min_margin" in given:
        margin, train = given["min_margin"], training_keys(given["min_margin"])
    else:
        margin, train, settled = MARGIN_BOUNDS[0], training_keys(MARGIN_BOUNDS[0]), False
        for _ in range(MARGIN_ROUNDS):
            choice = min_margin_from_margins([f.margin for f in facts if f.margin is not None
                                              and (f.user, f.conversation) in train])
            if choice.value == margin:
                settled = True
                break
            margin, train = choice.value, training_keys(choice.value)
        if not settled:
            margin, train = MARGIN_BOUNDS[0], training_keys(MARGIN_BOUNDS[0])
            choice = Choice(margin, "the margin these people's noise suggests moves the held-out split "
                                    "with it, so it cannot be read off training pairs alone: every pair is kept")
        chosen.values["min_margin"], chosen.reasons["min_margin"] = choice.value, choice.reason
    kept = [f for f in facts if (f.user, f.conversation) in train and (f.margin is None or f.margin >= margin)]
    per_person: dict = {}
    for f in kept:
        per_person[f.user] = per_person.get(f.user, 0) + 1
    chosen.train_pairs, chosen.people = len(kept), len(per_person)
    rules = {}
    if "epochs" not in given and "max_steps" not in given:
        epochs, chosen.steps = passes_from_pairs(list(per_person.values()), batch_size=batch_size,
                                                 seconds_per_step=seconds_per_step, budget_seconds=budget_seconds)
        rules["epochs"] = epochs
    rates = learning_rates(chosen.people, hidden)
    rules["lr_lora"] = rates.get("lr_lora")
    if personalized:
        rules.update(lr_user=rates.get("lr_user"), **user_model_size(chosen.people))
    if lengths is not None:
        replies = list(dict.fromkeys(f.chosen for f in kept))
        if len(replies) > TOKEN_SAMPLE:  # evenly spread, so the same data gives the same sample
            replies = [replies[i * len(replies) // TOKEN_SAMPLE] for i in range(TOKEN_SAMPLE)]
        rules["eval_max_new_tokens"] = token_budget(lengths(replies) if replies else [])
    for name, choice in rules.items():
        if choice is not None and name not in given:
            chosen.values[name], chosen.reasons[name] = choice.value, choice.reason
    return chosen


# --- the command line: the same rules on a list of pairs --------------------------------------------------

def facts_of(pairs: list) -> list[PairFact]:
    """``PairFact``s of ``data.Pair``s: a pair without both scores has no margin (it is always kept); its chosen
    reply's key is (conversation, turn, text): one reply per turn, as the database's reply ids count them."""
    return [PairFact(p.user_id, p.conversation_id,
                     None if p.score_chosen is None or p.score_rejected is None else p.score_chosen - p.score_rejected,
                     (p.conversation_id, p.turn, p.chosen[-1]["content"])) for p in pairs]


def with_margin(pairs: list, margin: float, min_pairs: int = 1) -> list:
    """The pairs a margin filter keeps (those without scores always), without people left with fewer than
    ``min_pairs``: the worker's filter (``users.collection.pairs``), on a list of pairs."""
    facts = facts_of(pairs)
    keys = keys_at(facts, margin, min_pairs)
    return [p for p, f in zip(pairs, facts)
            if (f.margin is None or f.margin >= margin) and (f.user, f.conversation) in keys]


def choose_for_pairs(pairs: list, *, split: dict, batch_size: int, model_path: str | None = None,
                     min_pairs: int = 1, given: dict | None = None, personalized: bool = True) -> Chosen:
    """``choose`` on ``data.Pair``s, with the base model's width and tokenizer from ``model_path`` (a folder;
    a hub id gives neither: no width scaling, lengths estimated). No time budget: nothing measured here."""
    hidden = None
    if model_path and (Path(model_path) / "config.json").is_file():
        hidden = json.loads((Path(model_path) / "config.json").read_text()).get("hidden_size")
    return choose(facts_of(pairs), split=split, batch_size=batch_size, min_pairs=min_pairs, hidden=hidden,
                  lengths=lambda keys: token_lengths([text for _, _, text in keys], model_path)[0], given=given,
                  personalized=personalized)
