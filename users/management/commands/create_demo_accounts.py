"""Demo accounts for trying the site: a staff member and a participant, each with a password generated
once and printed once. Made only with DEBUG on (or ``--even-without-debug``), only when missing; an
existing account is never touched, so nobody's password is ever reset to a known one."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO = (("staff", True), ("participant", False))


class Command(BaseCommand):
    help = "Create a demo staff account and a demo participant if they do not exist, and print their passwords once."

    def add_arguments(self, parser):
        parser.add_argument("--even-without-debug", action="store_true",
                            help="create them although DEBUG is off (a demo site on a server)")

    def handle(self, *args, even_without_debug: bool = False, **options):
        if not settings.DEBUG and not even_without_debug:
            self.stdout.write("  no demo accounts: DEBUG is off (create real ones with createsuperuser, or pass "
                              "--even-without-debug)")
            return
        User = get_user_model()
        for username, is_staff in DEMO:
            role = "staff" if is_staff else "participant"
            if User.objects.filter(username=username).exists():
                self.stdout.write(f"  {role:<12} username: {username:<12} (exists; its password was printed when "
                                  "it was made)")
                continue
            password = secrets.token_urlsafe(12)
            User.objects.create_user(username, password=password, is_staff=is_staff, is_superuser=is_staff)
            self.stdout.write(f"  {role:<12} username: {username:<12} password: {password}  (shown once: note it)")
