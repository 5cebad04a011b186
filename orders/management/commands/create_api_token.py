"""Issue an API token for a user from the shell (operators, scripts, the fault tests).

Prints `Generated token <token> for user <name>`; the database keeps only its hash, so
this is the one time it can be read. It expires like a login's token.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from knox.models import AuthToken


class Command(BaseCommand):
    help = "Issue an expiring API token for a user (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {username!r}.") from None
        _, token = AuthToken.objects.create(user=user)
        self.stdout.write(f"Generated token {token} for user {username}")
