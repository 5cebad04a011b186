"""Staff permission checks, shared by the command API and the projected reads.

Staff status alone grants nothing but the admin login: each power is a Django
permission (given directly or by a group). Refusals are 403s with stable codes.
"""

from __future__ import annotations

from rest_framework import exceptions


class StaffOnly(exceptions.PermissionDenied):
    default_detail = "Only staff may do this."
    default_code = "staff_only"


class PermissionRequired(exceptions.PermissionDenied):
    default_detail = "Your login does not have the permission this needs."
    default_code = "permission_required"


def require_staff_permission(request, permission: str) -> None:
    """Refuse anyone but staff holding `permission` (given directly or by a group)."""
    if not request.user.is_staff:
        raise StaffOnly()
    if not request.user.has_perm(permission):
        raise PermissionRequired(f"This needs the permission {permission}.")
