"""A password change ends the user's API tokens, however the password was changed.

Changing the password is how a user shuts out someone who took a token (sessions end
by themselves: each carries a hash of the password). Every way Django changes a
password (the admin's forms, the password-change and reset views, `manage.py
changepassword`, the API's `POST /api/auth/password`) ends in `set_password` and a save
of the user, so the revocation hangs on that save rather than on each door: a save that
stores a new password deletes the user's tokens in the same step.

Not a change: the rehash Django makes at sign-in when the hasher's settings moved on
(the same password, stored anew; it clears `_password` and saves only `password`).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save, pre_save
from knox.models import AuthToken

_REVOKE = "_shop_revoke_api_tokens"


def _note_password_change(sender, instance, raw=False, update_fields=None, **kwargs):
    if raw or instance._state.adding:
        return  # a fixture being loaded, or a new user: no tokens yet
    if update_fields is not None and "password" not in update_fields:
        return  # e.g. last_login at each sign-in
    if instance._password is not None:
        changed = True  # set_password was called: a new password, whatever its hash
    elif update_fields == frozenset({"password"}):
        changed = False  # the rehash at sign-in
    else:
        # A hash assigned directly (set_unusable_password, a hash made elsewhere).
        stored = sender._default_manager.filter(pk=instance.pk).values_list(
            "password", flat=True
        ).first()
        changed = stored is not None and stored != instance.password
    if changed:
        setattr(instance, _REVOKE, True)


def _revoke_api_tokens(sender, instance, raw=False, **kwargs):
    if getattr(instance, _REVOKE, False):
        delattr(instance, _REVOKE)
        AuthToken.objects.filter(user=instance).delete()


def connect() -> None:
    user_model = get_user_model()
    pre_save.connect(_note_password_change, sender=user_model,
                     dispatch_uid="shop.web.password_changes.note")
    post_save.connect(_revoke_api_tokens, sender=user_model,
                      dispatch_uid="shop.web.password_changes.revoke")
