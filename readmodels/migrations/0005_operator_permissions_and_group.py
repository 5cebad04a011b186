"""The read side's operations as permissions, and the "operators" group that has them all."""

from django.db import migrations

from shop.web.staff_groups import group_migration

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


create_groups, remove_groups = group_migration(GROUPS)


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
