from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO = (
    ("staff", "staff-demo-pass", True),
    ("participant", "participant-demo-pass", False),
)


class Command(BaseCommand):
    help = "Create (or reset) a demo staff account and a demo participant, and print their credentials."

    def handle(self, *args, **options):
        User = get_user_model()
        for username, password, is_staff in DEMO:
            user, _ = User.objects.get_or_create(username=username)
            user.is_staff = is_staff
            user.is_superuser = is_staff
            user.set_password(password)
            user.save()
            role = "staff" if is_staff else "participant"
            self.stdout.write(f"  {role:<12} username: {username:<12} password: {password}")
