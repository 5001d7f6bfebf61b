from django.conf import settings
from django.core.management.base import BaseCommand

from trainer.commandline import add_database_arguments, group_of_from, pairs_from, plain_errors, run_model
from trainer.core.cli import add_evaluate_arguments, evaluate_from


class Command(BaseCommand):
    help = ("Pair accuracy of a saved run (and a baseline beside it) on its held-out pairs or others: overall, "
            "seen and unseen people, per group (a field of the pairs, a survey answer, or a groups file) and "
            "per person.")

    def add_arguments(self, parser):
        add_evaluate_arguments(parser, model_default=settings.BASE_MODEL)
        add_database_arguments(parser)
        parser.add_argument("--from-database", action="store_true",
                            help="evaluate on the database's pairs (under the filters) instead of the held-out ones")

    def handle(self, *args, **options):
        with plain_errors():
            pairs = pairs_from(options) if options["pairs"] or options["from_database"] else None
            evaluate_from(options, pairs, model_path=run_model(options, self.stdout),
                          group_of=group_of_from(options), say=self.stdout.write)
