from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from trainer.core import provision


class Command(BaseCommand):
    help = "Make BASE_MODEL loadable offline: convert the bundled SmolLM2 once, or check a folder or hub id."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="convert the bundled model again")

    def handle(self, *args, force: bool = False, **options):
        try:
            if settings.BASE_MODEL == provision.BUNDLED:
                provision.convert_bundled(settings.DATA_DIR, force=force, log=self.stdout.write)
            location = provision.resolve(settings.BASE_MODEL, settings.DATA_DIR)
            info = provision.check_loadable(location)
        except provision.ProvisionError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(
            f"Model ready: {info['name']} ({info['architecture']}, {info['layers']} layers, "
            f"hidden {info['hidden_size']}, vocabulary {info['vocab_size']}) at {info['path']}"
        ))
