"""The read side's operations as permissions, and the "operators" group that has them all."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUPS = {
    "operators": [
        "readmodels.view_projections",
        "readmodels.view_checkpoint",
        "readmodels.rebuild_read_model",
        "readmodels.reconcile_read_model",
        "readmodels.repair_read_model",
        "readmodels.view_deadletter",
        "readmodels.retry_dead_letters",
        "readmodels.discard_dead_letters",
        "readmodels.view_reconcilerun",
        "readmodels.view_rebuild",
    ],
}


def _ensure_permissions(apps):
    """Create the permissions of every app now; Django would only do it after migrating."""
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def create_groups(apps, schema_editor):
    _ensure_permissions(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, permissions in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for permission in permissions:
            app_label, codename = permission.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ('readmodels', '0004_admin_names'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='checkpoint',
            options={'ordering': ['projector', 'segment'], 'permissions': [('view_projections', 'Can see the projections page'), ('rebuild_read_model', 'Can rebuild a read model'), ('reconcile_read_model', 'Can reconcile a read model'), ('repair_read_model', "Can repair a read model's differences"), ('retry_dead_letters', 'Can retry dead letters'), ('discard_dead_letters', 'Can discard dead letters')], 'verbose_name': 'projection', 'verbose_name_plural': 'projections'},
        ),
        migrations.RunPython(create_groups, remove_groups),
    ]
