"""Export a trained version as a folder the field's tools load without this project: the LoRA as a standard
PEFT adapter, each person's vectors (safetensors) with their ids, the tokenizer and a model card."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from trainer.models import TrainingRun


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

    def add_arguments(self, parser):
        parser.add_argument("run", type=int, help="the run's number (its page's /runs/N/)")
        parser.add_argument("out", type=Path, help="a new folder to write")
        parser.add_argument("--merged", action="store_true",
                            help="also the base model with the LoRA folded in (merged/, as big as the base model)")

    def handle(self, *args, run: int, out: Path, merged: bool, **options):
        from trainer.version_export import NotExportable, export_run

        version = TrainingRun.objects.filter(pk=run).first()
        if version is None:
            raise CommandError(f"no run {run}: `python manage.py train` or the dashboard's runs page lists them")
        try:
            folder = export_run(version, out, merged=merged)
        except (NotExportable, FileExistsError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"wrote {folder}: load it with peft's AutoPeftModelForCausalLM; README.md shows how to "
                          "put a person's vectors in front of a prompt")
