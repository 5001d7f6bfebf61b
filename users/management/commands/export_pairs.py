"""Write preference pairs as JSONL (TRL's conversational format) and say how many each person has; with
``--dataset DIR``, as a Hugging Face dataset folder (the JSONL and a dataset card) that ``load_dataset`` reads.

Only people who agreed to take part and have not withdrawn: the pairs are training data."""

import json
import os
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from trainer.core.pairing import DEFAULT as DEFAULT_PAIRING
from trainer.core.pairing import STRATEGIES as PAIRINGS
from users.consent import consented
from users.collection.pairs import pairs_export_lines
from users.dataset.selectors import people_named

DATA_FILE = "data/train.jsonl"  # inside a --dataset folder


class Command(BaseCommand):
    help = ("Write the preference pairs of the people who consented as JSONL (TRL's conversational format) to a "
            "file or stdout, or as a Hugging Face dataset folder, then the pairs per person (to stderr).")

    def add_arguments(self, parser):
        parser.add_argument("output", nargs="?", type=Path, help="file to write (default: stdout)")
        parser.add_argument("--dataset", type=Path, metavar="DIR",
                            help=f"write a Hugging Face dataset folder instead: {DATA_FILE} and README.md (its card)")
        parser.add_argument("--min-margin", type=int, default=1, help="smallest score gap that makes a pair")
        parser.add_argument("--pairing", choices=list(PAIRINGS), default=DEFAULT_PAIRING,
                            help="how a turn's ratings become pairs: "
                                 + "; ".join(f"{k}: {v}" for k, v in PAIRINGS.items()))
        parser.add_argument("--user", action="append", default=[],
                            help="a person, repeatable: the user_id the pairs carry (web-<username>, or the PRISM "
                                 "id of an imported person) or a username; default everyone")
        parser.add_argument("--with-profile", action="store_true", help="add the person's self-description")
        parser.add_argument("--stats", action="store_true", help="also the distribution of pairs per person and "
                                                                 "of score margins")

    def handle(self, *args, output=None, dataset=None, min_margin, pairing=DEFAULT_PAIRING, user, with_profile, stats,
               **options):
        if output is not None and dataset is not None:
            raise CommandError("Give a file or --dataset DIR, not both.")
        if dataset is not None and dataset.exists():
            raise CommandError(f"{dataset} exists: choose a new folder.")
        users = get_user_model().objects.filter(**consented())
        if user:
            named, unknown = people_named(user)
            if unknown:
                raise CommandError(f"No person called {', '.join(map(repr, unknown))}: give a username or the "
                                   "user_id the pairs carry (web-<username> for this site's accounts, the PRISM "
                                   "user_id for imported people).")
            users = users.filter(pk__in=[u.pk for u in named])
            kept = set(users.values_list("pk", flat=True))
            left_out = [u.username for u in named if u.pk not in kept]
            if left_out:
                self.stderr.write(f"left out (no consent, or withdrew): {', '.join(left_out)}")
        lines = pairs_export_lines(users=users, min_margin=min_margin, with_profile=with_profile, pairing=pairing)
        if dataset is not None:
            dataset.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=f".{dataset.name}-", dir=dataset.parent) as tmp:
                folder = Path(tmp) / dataset.name
                (folder / DATA_FILE).parent.mkdir(parents=True)
                with open(folder / DATA_FILE, "w", encoding="utf-8") as out:
                    per_person, margins = write_pairs(lines, out)
                (folder / "README.md").write_text(dataset_card(per_person, margins, min_margin, with_profile,
                                                               pairing))
                os.replace(folder, dataset)  # the whole folder or none of it
            output = dataset
        elif output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            with open(output, "w", encoding="utf-8") as out:
                per_person, margins = write_pairs(lines, out)
        else:
            per_person, margins = write_pairs(lines, sys.stdout)
        self.stderr.write(f"{sum(per_person.values()):,} pairs of {len(per_person):,} people"
                          + (f" written to {output}" if output else ""))
        for person, count in sorted(per_person.items()):
            self.stderr.write(f"  {person:<30} {count:>6,}")
        if stats and per_person:
            counts = sorted(per_person.values())
            self.stderr.write(f"pairs per person: min {counts[0]}, median {statistics.median(counts):g}, "
                              f"mean {statistics.mean(counts):.1f}, max {counts[-1]}")
            q = statistics.quantiles(margins, n=4) if len(margins) > 1 else [margins[0]] * 3
            self.stderr.write(f"score margin (chosen - rejected): min {min(margins)}, quartiles "
                              f"{q[0]:g} / {q[1]:g} / {q[2]:g}, max {max(margins)}")


def write_pairs(lines, out) -> tuple[Counter, list[int]]:
    """Write the JSONL ``lines`` to ``out``: (pairs per person, score margins)."""
    per_person, margins = Counter(), []
    for line in lines:
        out.write(line)
        pair = json.loads(line)
        per_person[pair["user_id"]] += 1
        margins.append(pair["score_chosen"] - pair["score_rejected"])
    return per_person, margins


def dataset_card(per_person: Counter, margins: list[int], min_margin: int, with_profile: bool,
                 pairing: str = DEFAULT_PAIRING) -> str:
    made = {"best": "each rated turn's chosen reply against each reply",
            "all": "each rated reply of a turn against each reply of that turn",
            "weighted": "each rated turn's chosen reply against each reply"}[pairing]
    counts = sorted(per_person.values()) or [0]
    return "\n".join([
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        f"    path: {DATA_FILE}",
        "tags: [preference, dpo, personalization, prism]",
        "---",
        "",
        "# Personalized preference pairs",
        "",
        f"{sum(per_person.values()):,} pairs from {len(per_person):,} people who agreed to take part (those who "
        f"withdrew are left out), in TRL's conversational format: {made} scored at least {max(1, min_margin)} "
        f"lower (scores 1-100; pairing: {PAIRINGS[pairing]}).",
        "",
        "| field | what it holds |",
        "|---|---|",
        "| `user_id` | the person (web-<username>, or an imported person's PRISM id) |",
        "| `conversation_id`, `turn` | where the pair comes from |",
        "| `prompt` | the dialog so far: earlier turns with their chosen replies, then this turn's message |",
        "| `chosen`, `rejected` | one assistant message each |",
        "| `score_chosen`, `score_rejected` | the person's ratings |",
        *(["| `weight` | the pair's share of the loss: its margin over the mean margin (mean 1) |"]
          if pairing == "weighted" else []),
        *(["| `profile` | the person's self-description |"] if with_profile else []),
        "",
        f"Pairs per person: min {counts[0]}, median {statistics.median(counts):g}, max {counts[-1]}. "
        + (f"Score margin: median {statistics.median(margins):g}." if margins else ""),
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'pairs = load_dataset("path/to/this/folder", split="train")',
        "```",
        "",
        "Each `user_id` names one person and their ratings are personal data: share the folder only as the "
        "study's consent allows.",
        "",
    ])
