"""Preference pairs: the JSONL export format, validation, and the seen/unseen + train/test split."""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

REQUIRED = ("user_id", "prompt", "chosen", "rejected")


class DataError(ValueError):
    """The pairs cannot be used; the message says which line or user and why."""


@dataclass(frozen=True)
class Pair:
    user_id: str
    prompt: list[dict]  # chat messages up to and including the user turn being answered
    chosen: list[dict]  # [{"role": "assistant", "content": ...}]
    rejected: list[dict]
    conversation_id: str = ""
    turn: int = 0
    score_chosen: float | None = None
    score_rejected: float | None = None
    profile: str | None = None  # optional textual profile, used only when the run enables it
    weight: float = 1.0  # the pair's share of the loss (margin-weighted pairing; 1 otherwise)
    extra: dict = field(default_factory=dict, compare=False)  # anything else on the line, carried along

    def to_json(self) -> dict:
        data = asdict(self)
        extra = data.pop("extra")
        if data["profile"] is None:
            data.pop("profile")
        if data["weight"] == 1.0:
            data.pop("weight")
        return {**data, **extra}


def _check_messages(value, name: str, where: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: {name} must be a non-empty list of chat messages")
    for m in value:
        if not isinstance(m, dict) or "role" not in m or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: every {name} message needs a role and a string content")
    return value


def pair_from_json(data: dict, where: str = "pair") -> Pair:
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
    known = {"user_id", "conversation_id", "turn", "prompt", "chosen", "rejected", "score_chosen",
             "score_rejected", "profile", "weight"}
    weight = data.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < float("inf"):
        raise DataError(f"{where}: weight must be a positive number (got {weight!r})")
    return Pair(
        user_id=str(data["user_id"]),
        prompt=_check_messages(data["prompt"], "prompt", where),
        chosen=_check_messages(data["chosen"], "chosen", where),
        rejected=_check_messages(data["rejected"], "rejected", where),
        conversation_id=str(data.get("conversation_id", "")),
        turn=int(data.get("turn", 0)),
        score_chosen=data.get("score_chosen"),
        score_rejected=data.get("score_rejected"),
        profile=data.get("profile") or None,
        weight=float(weight),
        extra={k: v for k, v in data.items() if k not in known},
    )


def read_pairs(path: str | Path) -> list[Pair]:
    """All pairs of a JSONL file; blank lines are skipped, a bad line stops with its number."""
    pairs = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not JSON ({exc.msg})") from None
            pairs.append(pair_from_json(data, f"{path}:{n}"))
    return pairs


def write_pairs(path: str | Path, pairs: list[Pair]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for p in pairs:
            fh.write(json.dumps(p.to_json(), ensure_ascii=False) + "\n")


def require_pairs(pairs: list[Pair], what: str = "training") -> None:
    if not pairs:
        raise DataError(f"No {what} pairs: the dataset is empty (or every user ended up in another split).")


@dataclass
class Split:
    train: list[Pair]
    test_seen: list[Pair]  # held-out conversations of users who are also in train
    test_unseen: list[Pair]  # every pair of users kept out of training (evaluated as the generic user)
    seen_users: list[str]
    unseen_users: list[str]

    def summary(self) -> dict:
        return {"train_pairs": len(self.train), "test_seen_pairs": len(self.test_seen),
                "test_unseen_pairs": len(self.test_unseen), "seen_users": len(self.seen_users),
                "unseen_users": len(self.unseen_users)}

    def keys(self) -> dict:
        """Which (user, conversation) went where, in order: what ``split_as_recorded`` applies again."""
        def ordered(pairs):
            return [list(k) for k in dict.fromkeys((p.user_id, p.conversation_id) for p in pairs)]

        return {"train": ordered(self.train), "test_seen": ordered(self.test_seen),
                "test_unseen": ordered(self.test_unseen), "seen_users": list(self.seen_users),
                "unseen_users": list(self.unseen_users)}


@dataclass
class SplitPlan:
    """Which (user, conversation) keys go where, in the order their pairs are listed in each part."""

    seen_users: list
    unseen_users: list
    train: list[tuple]  # (user, conversation) keys of the seen users' training conversations
    test_seen: list[tuple]  # held-out conversations of seen users
    test_unseen: list[tuple]  # every conversation of the unseen users


def split_settings(data_filter: dict, seed: int) -> dict:
    """The keyword arguments of ``split_pairs`` and ``plan_split`` for a run's data filter and seed."""
    return {"unseen_fraction": float(data_filter.get("unseen_fraction", 0.1)),
            "test_fraction": float(data_filter.get("test_fraction", 0.2)), "seed": seed}


def plan_split(keys, *, unseen_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> SplitPlan:
    """Split by user first (seen / unseen), then each seen user's conversations into train / test.

    ``keys``: the (user, conversation) of every pair, or of every conversation with pairs, in the order the
    pairs come; only that order and which keys share a user matter, so the start form plans with database ids
    what the worker splits with exported ids. A seen user keeps at least one conversation in train; a user
    with a single conversation has no seen-test pairs. At least one user stays seen.
    """
    rng = random.Random(seed)
    by_user: dict = {}
    for user, conversation in keys:  # first-appearance order: the split only depends on the data and the seed
        by_user.setdefault(user, {}).setdefault(conversation, None)
    users = list(by_user)
    rng.shuffle(users)
    n_unseen = max(0, min(int(round(unseen_fraction * len(users))), len(users) - 1))
    unseen, seen = users[:n_unseen], users[n_unseen:]
    train, test_seen = [], []
    for u in seen:
        conversations = list(by_user[u])
        rng.shuffle(conversations)
        n_test = min(int(round(test_fraction * len(conversations))), len(conversations) - 1)
        for i, c in enumerate(conversations):
            (test_seen if i < n_test else train).append((u, c))
    test_unseen = [(u, c) for u in unseen for c in by_user[u]]
    return SplitPlan(seen, unseen, train, test_seen, test_unseen)


def split_pairs(pairs: list[Pair], *, unseen_fraction: float = 0.1, test_fraction: float = 0.2,
                seed: int = 0) -> Split:
    """``plan_split`` applied to the pairs themselves."""
    require_pairs(pairs, "")
    by_key: dict[tuple, list[Pair]] = {}
    for p in pairs:
        by_key.setdefault((p.user_id, p.conversation_id), []).append(p)
    plan = plan_split(by_key, unseen_fraction=unseen_fraction, test_fraction=test_fraction, seed=seed)

    def gathered(keys):
        return [p for key in keys for p in by_key[key]]

    return Split(gathered(plan.train), gathered(plan.test_seen), gathered(plan.test_unseen),
                 sorted(plan.seen_users), sorted(plan.unseen_users))


def split_as_recorded(pairs: list[Pair], recorded: dict) -> Split:
    """``pairs`` split as ``Split.keys()`` recorded it when the run trained: each conversation stays in the part
    it was in, whatever was added or withdrawn since. Pairs of conversations the record does not name (rated
    since) are left out; the people stay as recorded (a version's user table does not change)."""
    by_key: dict[tuple, list[Pair]] = {}
    for p in pairs:
        by_key.setdefault((p.user_id, p.conversation_id), []).append(p)

    def gathered(part):
        return [p for key in recorded[part] for p in by_key.get(tuple(key), [])]

    return Split(gathered("train"), gathered("test_seen"), gathered("test_unseen"),
                 list(recorded["seen_users"]), list(recorded["unseen_users"]))


FORGOTTEN = "(deleted {row})"  # the name a deleted person's row keeps: in a version's users.json, in split.json
_FORGOTTEN_NAME = re.compile(r"\(deleted \d+\)")


def is_forgotten(name: str) -> bool:
    return _FORGOTTEN_NAME.fullmatch(name) is not None


def split_forget(path: str | Path, user_id: str) -> bool:
    """Remove a person from a run's recorded split (``split.json``): their conversations leave every part and
    their name becomes a placeholder (the number of people, and so a resumed run's user table, stays). The
    file is replaced whole. False when the record does not name them."""
    path = Path(path)
    recorded = json.loads(path.read_text())
    if user_id not in recorded["seen_users"] + recorded["unseen_users"]:
        return False
    for part in ("train", "test_seen", "test_unseen"):
        recorded[part] = [key for key in recorded[part] if key[0] != user_id]
    for part in ("seen_users", "unseen_users"):
        recorded[part] = [FORGOTTEN.format(row=n) if u == user_id else u for n, u in enumerate(recorded[part])]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(recorded))
    tmp.replace(path)
    return True
