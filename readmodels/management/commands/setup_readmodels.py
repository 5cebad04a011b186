"""Create the Elasticsearch indices and aliases of the read models (safe to run again)."""

from django.core.management.base import BaseCommand, CommandError

from readmodels import projectors
from readmodels.stores import StoreUnavailable, es


class Command(BaseCommand):
    help = "Create the versioned Elasticsearch indices behind their aliases, if missing."

    def handle(self, *args, **options):
        for projector in projectors.PROJECTORS.values():
            if projector.store != "elasticsearch":
                continue
            try:
                index = es.ensure_index(projector.name, projector.mappings)
            except StoreUnavailable as exc:
                raise CommandError(f"Elasticsearch is not reachable: {exc}") from exc
            self.stdout.write(f"{es.alias(projector.name)} -> {index}")
