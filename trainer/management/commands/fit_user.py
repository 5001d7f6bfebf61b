from django.conf import settings
from django.core.management.base import BaseCommand

from trainer.commandline import add_database_arguments, pairs_from, plain_errors, run_model
from trainer.core.cli import add_fit_user_arguments
from trainer.core.commands import fit_user_command


class Command(BaseCommand):
    help = ("Fit one person's vectors on a saved P-DPO run from their pairs (the LoRA and everyone else frozen), "
            "test them on their remaining pairs, and save them in the run's vectors/ folder for generate.")

    def add_arguments(self, parser):
        add_fit_user_arguments(parser, pairs_required=False, model_default=settings.BASE_MODEL)
        add_database_arguments(parser)

    def handle(self, *args, **options):
        with plain_errors():
            user_id = options["user"]
            if options["pairs"]:
                pairs = pairs_from(options)
            else:  # a username works too: their pairs carry the exported id
                pairs = pairs_from(options, people=[user_id])
                ids = {p.user_id for p in pairs}
                if user_id not in ids and len(ids) == 1:
                    user_id = ids.pop()
            fit_user_command(options["run"], user_id, pairs, max_pairs=options["max_pairs"],
                             model_path=run_model(options, self.stdout), say=self.stdout.write)
