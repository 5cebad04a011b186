"""Staff groups that a shop ships with, made by the apps' migrations.

Each app's migration names its groups and their permissions; this makes them (and takes
them away on a reverse migration). Permissions are created first: Django would only
create them after every migration has run, too late for a migration that grants them.
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions


def _ensure_permissions(apps) -> None:
    """Create the permissions of every app now; Django would only do it after migrating."""
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def group_migration(groups: dict[str, list[str]]):
    """RunPython's forward and backward functions for these groups: name -> permission labels."""

    def create_groups(apps, schema_editor):
        _ensure_permissions(apps)
        Group = apps.get_model("auth", "Group")
        Permission = apps.get_model("auth", "Permission")
        for name, permissions in groups.items():
            group, _ = Group.objects.get_or_create(name=name)
            for permission in permissions:
                app_label, codename = permission.split(".")
                group.permissions.add(
                    Permission.objects.get(content_type__app_label=app_label, codename=codename)
                )

    def remove_groups(apps, schema_editor):
        apps.get_model("auth", "Group").objects.filter(name__in=groups).delete()

    return create_groups, remove_groups
