import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from users.collection.pairs import pairs_export_lines


class Command(BaseCommand):
    help = "Write the preference pairs as JSONL (TRL's conversational format) to a file or stdout."

    def add_arguments(self, parser):
        parser.add_argument("output", nargs="?", type=Path, help="file to write (default: stdout)")
        parser.add_argument("--min-margin", type=int, default=1, help="smallest score gap that makes a pair")
        parser.add_argument("--user", action="append", default=[], help="username (repeatable); default all")
        parser.add_argument("--with-profile", action="store_true", help="add the person's self-description")

    def handle(self, *args, output=None, min_margin, user, with_profile, **options):
        users = get_user_model().objects.filter(username__in=user) if user else None
        lines = pairs_export_lines(users=users, min_margin=min_margin, with_profile=with_profile)
        if output is None:
            count = sum(1 for line in lines if sys.stdout.write(line) is not None)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            with open(output, "w", encoding="utf-8") as out:
                count = sum(1 for line in lines if out.write(line) is not None)
        self.stderr.write(f"{count:,} pairs")
