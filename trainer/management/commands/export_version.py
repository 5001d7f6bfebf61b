"""Export a trained version as a folder the field's tools load without this project: the LoRA as a standard
PEFT adapter, each person's vectors (safetensors) under a pseudonym, the tokenizer and a model card.

    python manage.py export_version RUN DIR [--merged]
    python manage.py export_version RUN --who NAME [--who NAME ...]   (a person's pseudonym, or who is behind one)
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from trainer.models import TrainingRun


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

    def add_arguments(self, parser):
        parser.add_argument("run", type=int, help="the run's number (its page's /runs/N/)")
        parser.add_argument("out", type=Path, nargs="?", help="a new folder to write")
        parser.add_argument("--merged", action="store_true",
                            help="also the base model with the LoRA folded in (merged/, as big as the base model)")
        parser.add_argument("--who", action="append", default=[], metavar="NAME",
                            help="print the pseudonym an export gives this person (a username or the id the site's "
                                 "exports carry) and their row, or the person behind a pseudonym; writes nothing")

    def handle(self, *args, run: int, out: Path | None, merged: bool, who: list[str], **options):
        from trainer.version_export import NotExportable, export_run
        from trainer.version_export import who as who_is

        version = TrainingRun.objects.filter(pk=run).first()
        if version is None:
            raise CommandError(f"no run {run}: `python manage.py train` or the dashboard's runs page lists them")
        if who:
            if not version.artifacts:
                raise CommandError(f"run {run} has no saved model, so no one has a row in it")
            self.stdout.write("\n".join(who_is(version, who)))
            return
        if out is None:
            raise CommandError("name a new folder to write the export to (or ask --who NAME)")
        try:
            folder = export_run(version, out, merged=merged)
        except (NotExportable, FileExistsError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"wrote {folder}: load it with peft's AutoPeftModelForCausalLM; README.md shows how to "
                          "put a person's vectors in front of a prompt")
