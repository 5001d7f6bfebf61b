from pathlib import Path

from django.core.management.base import BaseCommand

from users.prism.schema import FILES
from users.prism.writer import prism_export


class Command(BaseCommand):
    help = "Write survey.jsonl, conversations.jsonl and utterances.jsonl in PRISM's format into a folder."

    def add_arguments(self, parser):
        parser.add_argument("folder", type=Path)

    def handle(self, *args, folder: Path, **options):
        folder.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            path = folder / f"{name}.jsonl"
            tmp = path.with_suffix(".jsonl.part")
            with open(tmp, "w", encoding="utf-8") as out:
                count = prism_export(file=name, out=out)
            tmp.replace(path)
            self.stdout.write(f"{path}: {count:,} records")
