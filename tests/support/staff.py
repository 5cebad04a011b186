"""Staff users as the shop ships them: in the groups its migrations make."""

from __future__ import annotations

import uuid

from knox.models import AuthToken


def shipped_groups() -> dict[str, list[str]]:
    """The staff groups the migrations create: name -> permission labels."""
    import importlib

    groups: dict[str, list[str]] = {}
    for module in (
        "orders.migrations.0004_order_permissions_and_staff_groups",
        "readmodels.migrations.0005_operator_permissions_and_group",
    ):
        groups.update(importlib.import_module(module).GROUPS)
    return groups


def shipped_group(name: str):
    """The group as its migration made it (made again if a transactional test's flush
    emptied the table)."""
    from django.contrib.auth.models import Group, Permission

    group, created = Group.objects.get_or_create(name=name)
    if created:
        for label in shipped_groups()[name]:
            app_label, codename = label.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
    return group


def support_staff_token() -> str:
    """An API token of a back-office user of the support group (top-ups are theirs)."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(
        username=f"support-{uuid.uuid4().hex[:8]}", password="x", is_staff=True
    )
    user.groups.add(shipped_group("support"))
    return AuthToken.objects.create(user=user)[1]
