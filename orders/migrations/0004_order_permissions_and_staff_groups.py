"""Staff powers as Django permissions: order permissions, and the groups a shop ships with.

"catalogue" edits products; "support" looks after customers and their orders, and may
credit a balance. The read side's "operators" group is made by readmodels' migrations.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUPS = {
    "catalogue": ["orders.view_product", "orders.add_product", "orders.change_product"],
    "support": [
        "orders.view_customer",
        "orders.add_customer",
        "orders.change_customer",
        "orders.top_up_balance",
        "orders.view_order",
        "orders.manage_orders",
        "orders.ship_order",
        "orders.view_product",
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
        ("orders", "0003_payment_events_and_top_up_permission"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='order',
            options={'ordering': ['-created_at'], 'permissions': [('manage_orders', 'Can place, pay and cancel orders for any customer'), ('ship_order', 'Can mark paid orders shipped')]},
        ),
        migrations.RunPython(create_groups, remove_groups),
    ]
