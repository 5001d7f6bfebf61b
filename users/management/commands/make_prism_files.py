from pathlib import Path

from django.core.management.base import BaseCommand

from users.synthetic.prism_files import PRISM_SIZE, prism_files_make


class Command(BaseCommand):
    help = "Generate PRISM-format files (full size by default: 1,500 people, 8,011 conversations, 68,371 replies)."

    def add_arguments(self, parser):
        parser.add_argument("folder", type=Path)
        for name, default in PRISM_SIZE.items():
            parser.add_argument(f"--{name}", type=int, default=default)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, folder, people, conversations, replies, seed, **options):
        paths = prism_files_make(folder=folder, people=people, conversations=conversations, replies=replies,
                                 seed=seed)
        for path in paths.values():
            self.stdout.write(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
