"""Create the first superuser from DJANGO_SUPERUSER_* (the init service); its password must pass the validators."""

import os

from django.core.management.base import BaseCommand, CommandError

from core.accounts import SuperuserPasswordRefused, superuser_ensure


class Command(BaseCommand):
    help = (
        "Create the superuser DJANGO_SUPERUSER_USERNAME with DJANGO_SUPERUSER_PASSWORD (and _EMAIL) unless it "
        "exists; refuses a placeholder or a password AUTH_PASSWORD_VALIDATORS reject. Nothing to do when unset."
    )

    def handle(self, *args, **options):
        # From the environment, like createsuperuser --noinput: a password on the command line
        # would show in the process list.
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
        if not username or not password:
            self.stdout.write("DJANGO_SUPERUSER_USERNAME or _PASSWORD unset: no superuser to create.")
            return
        try:
            created = superuser_ensure(username=username, email=email, password=password)
        except SuperuserPasswordRefused as error:
            raise CommandError(str(error)) from error
        if created:
            self.stdout.write(self.style.SUCCESS(f"Superuser {username} created."))
        else:
            self.stdout.write(f"Superuser {username} already exists; its password is left as it is.")
