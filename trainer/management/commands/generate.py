from django.conf import settings
from django.core.management.base import BaseCommand

from trainer.commandline import plain_errors, run_model
from trainer.core.cli import add_generate_arguments, generate_from


class Command(BaseCommand):
    help = ("A reply from a saved run: for a person (their fitted or trained vectors), with the generic vectors, "
            "or from the base model. Streams the text as it is generated.")

    def add_arguments(self, parser):
        add_generate_arguments(parser, model_default=settings.BASE_MODEL)

    def handle(self, *args, **options):
        with plain_errors():
            generate_from(options, model_path=run_model(options, self.stdout), user_id=options["user"],
                          write=lambda text: (self.stdout.write(text, ending=""), self.stdout.flush()))
