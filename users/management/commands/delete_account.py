"""Delete a person's account and everything of theirs: their rows (profile, conversations, ratings, pairs,
refits) and their vectors in every saved version (each version still loads; the person is served as
anyone unknown would be).

    python manage.py delete_account NAME [--yes]

NAME is a username or the id the exports carry (``web-<username>``, an imported person's PRISM id). Run on
a machine that sees ARTIFACTS_DIR (the web process never loads tensors). Generate workers hold the versions
they serve in memory: restart them so the forgotten vectors leave memory too.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from trainer.models import SPLIT_FILE, TrainingRun
from users.dataset.selectors import people_named
from users.models import VectorFit
from users.prism.ids import exported_user_id


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--yes", action="store_true", help="do it without asking")

    def handle(self, *args, name: str, yes: bool, **options):
        from trainer.core.artifacts import forget_person
        from trainer.core.data import split_forget

        found, missing = people_named([name])
        if missing or len(found) != 1:
            raise CommandError(f"no account named {name!r}: give a username or the id the exports carry")
        user = found[0]
        exported = exported_user_id(user, getattr(user, "profile", None))
        if not yes and input(f"Delete {user.username} ({exported}) and everything of theirs? [y/N] ").lower() != "y":
            raise CommandError("nothing deleted")
        versions = 0
        for run in TrainingRun.objects.exclude(artifacts="").only("pk", "artifacts"):
            if forget_person(settings.ARTIFACTS_DIR / run.artifacts, exported):
                versions += 1
        for record in (settings.ARTIFACTS_DIR / "runs").glob(f"*/{SPLIT_FILE}"):  # which runs held them out
            split_forget(record, exported)
        for download in (settings.ARTIFACTS_DIR / "runs").glob("*/downloads/*.zip"):  # written with their vectors
            download.unlink()
        files = 0
        for fit in VectorFit.objects.filter(user=user).exclude(path=""):
            target = settings.ARTIFACTS_DIR / fit.path
            if target.is_file():
                target.unlink()
                files += 1
        with transaction.atomic():
            user.delete()  # cascades: profile, conversations, replies, refits, hidden persona
        self.stdout.write(f"deleted {exported}: removed from {versions} saved version{'s' if versions != 1 else ''}"
                          f" and {files} refit file{'s' if files != 1 else ''}; restart the generate workers so "
                          "versions in memory forget them too")
