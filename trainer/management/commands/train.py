from django.conf import settings
from django.core.management.base import BaseCommand

from trainer.commandline import add_database_arguments, model_from, pairs_from, plain_errors
from trainer.core.cli import add_train_arguments, train_from


class Command(BaseCommand):
    help = ("Train P-DPO (or plain DPO with --plain) from the database's pairs or a pairs file, evaluate on the "
            "held-out pairs and save a run folder. Progress bars on stderr; Ctrl-C checkpoints and stops.")

    def add_arguments(self, parser):
        add_train_arguments(parser, model_default=settings.BASE_MODEL, pairs_required=False)
        add_database_arguments(parser, margin=False)

    def handle(self, *args, **options):
        with plain_errors():
            pairs = pairs_from(options)
            model = model_from(options, self.stdout)
            train_from(options, pairs, model_path=model, say=self.stdout.write)
