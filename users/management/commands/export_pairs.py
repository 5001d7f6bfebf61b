"""Write preference pairs as JSONL (TRL's conversational format) and say how many each person has."""

import json
import statistics
import sys
from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from users.collection.pairs import pairs_export_lines
from users.dataset.selectors import people_named


class Command(BaseCommand):
    help = ("Write the preference pairs as JSONL (TRL's conversational format) to a file or stdout, then the "
            "pairs per person (to stderr).")

    def add_arguments(self, parser):
        parser.add_argument("output", nargs="?", type=Path, help="file to write (default: stdout)")
        parser.add_argument("--min-margin", type=int, default=1, help="smallest score gap that makes a pair")
        parser.add_argument("--user", action="append", default=[],
                            help="a person, repeatable: the user_id the pairs carry (web-<username>, or the PRISM "
                                 "id of an imported person) or a username; default everyone")
        parser.add_argument("--with-profile", action="store_true", help="add the person's self-description")
        parser.add_argument("--stats", action="store_true", help="also the distribution of pairs per person and "
                                                                 "of score margins")

    def handle(self, *args, output=None, min_margin, user, with_profile, stats, **options):
        users = None
        if user:
            users, unknown = people_named(user)
            if unknown:
                raise CommandError(f"No person called {', '.join(map(repr, unknown))}: give a username or the "
                                   "user_id the pairs carry (web-<username> for this site's accounts, the PRISM "
                                   "user_id for imported people).")
        per_person, margins = Counter(), []
        out = sys.stdout if output is None else None
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            out = open(output, "w", encoding="utf-8")
        try:
            for line in pairs_export_lines(users=users, min_margin=min_margin, with_profile=with_profile):
                out.write(line)
                pair = json.loads(line)
                per_person[pair["user_id"]] += 1
                margins.append(pair["score_chosen"] - pair["score_rejected"])
        finally:
            if output is not None:
                out.close()
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
