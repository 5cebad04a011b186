"""Create the Elasticsearch indices and aliases of the read models (safe to run again).

Each index records the hash of the mappings it was made with. The mappings are
`dynamic: strict`, so a release that adds a field to a document would have every
write refused by an index made with the old mappings, and every row dead-lettered.
A deploy runs this command first: it stops the deploy with a clear message when a
mapping changed, or rebuilds the view into a new index when told to.
"""

from django.core.management.base import BaseCommand, CommandError

from readmodels import projectors
from readmodels.operations import rebuild
from readmodels.stores import StoreUnavailable, es


class Command(BaseCommand):
    help = (
        "Create the versioned Elasticsearch indices behind their aliases, if missing; "
        "refuse (or rebuild) when a read model's mappings changed."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--rebuild-on-mapping-change",
            action="store_true",
            help="rebuild a read model whose mappings changed (zero downtime) instead of failing",
        )

    def handle(self, *args, rebuild_on_mapping_change=False, **options):
        changed = []
        for projector in projectors.PROJECTORS.values():
            if not projector.mappings:
                continue  # a store without mappings (Redis) has no index to make
            try:
                index = es.ensure_index(projector.name, projector.mappings)
                stored = es.stored_mapping_hash(projector.name)
            except StoreUnavailable as exc:
                raise CommandError(f"Elasticsearch is not reachable: {exc}") from exc
            wanted = es.mapping_hash(projector.mappings)
            if stored == wanted:
                self.stdout.write(f"{es.alias(projector.name)} -> {index}")
                continue
            if not rebuild_on_mapping_change:
                changed.append((projector.name, index, stored, wanted))
                continue
            self.stdout.write(
                f"{projector.name}: mappings changed ({stored} -> {wanted}); rebuilding"
            )
            try:
                done = rebuild.rebuild(projector.name)
            except StoreUnavailable as exc:
                raise CommandError(f"rebuild of {projector.name} failed: {exc}") from exc
            self.stdout.write(
                f"{es.alias(projector.name)} -> {es.index_name(projector.name, done.generation)}"
            )
        if changed:
            lines = [
                f"  {name}: index {index} has mapping hash {stored or 'none'}, the code wants {wanted}"
                for name, index, stored, wanted in changed
            ]
            raise CommandError(
                "The mappings of these read models changed since their index was made; with "
                "strict mappings every new document would be refused. Rebuild them first "
                "(manage.py projections rebuild NAME, or run this command with "
                "--rebuild-on-mapping-change):\n" + "\n".join(lines)
            )
