from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from users.prism.importer import prism_import
from users.prism.schema import FILES, MAX_LINE_BYTES, PrismImportError


class Command(BaseCommand):
    help = ("Import PRISM files (survey.jsonl, conversations.jsonl, utterances.jsonl) from a folder or given "
            "one by one. Each file is atomic and re-importing replaces, never duplicates.")

    def add_arguments(self, parser):
        parser.add_argument("folder", nargs="?", type=Path, help="a folder holding any of the three files")
        for name in FILES:
            parser.add_argument(f"--{name}", type=Path, help=f"path of {name}.jsonl")
        parser.add_argument("--max-line-bytes", type=int, default=MAX_LINE_BYTES)

    def handle(self, *args, folder=None, max_line_bytes, **options):
        paths = {name: options[name] for name in FILES if options.get(name)}
        if folder is not None:
            for name in FILES:
                if name not in paths and (folder / f"{name}.jsonl").exists():
                    paths[name] = folder / f"{name}.jsonl"
        if not paths:
            raise CommandError("Name a folder holding survey.jsonl / conversations.jsonl / utterances.jsonl, "
                               "or pass --survey, --conversations, --utterances.")
        handles = {}
        try:
            for name, path in paths.items():
                try:
                    handles[name] = open(path, "rb")
                except OSError as exc:
                    raise CommandError(f"Cannot read {path}: {exc.strerror}") from None
            reports = prism_import(files=handles, names={k: str(v) for k, v in paths.items()},
                                   max_line_bytes=max_line_bytes)
        except PrismImportError as exc:
            raise CommandError(f"Refused, nothing kept from that file: {exc}") from None
        finally:
            for handle in handles.values():
                handle.close()
        for report in reports:
            self.stdout.write(str(report))
