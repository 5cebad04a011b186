"""Staff powers as Django permissions: order permissions, and the groups a shop ships with.

"catalogue" edits products; "support" looks after customers and their orders, and may
credit a balance. The read side's "operators" group is made by readmodels' migrations.
"""

from django.db import migrations

from shop.web.staff_groups import group_migration

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


create_groups, remove_groups = group_migration(GROUPS)


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
