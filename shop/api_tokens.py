"""How API requests are authenticated: knox tokens, each request loading only its own.

Its own module: DRF imports the authentication classes while it loads its views, so
this must not import any view.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication
from knox.models import AuthToken


class ApiTokenAuthentication(TokenAuthentication):
    """knox's token authentication without its sweep of the user's other tokens.

    knox loads every token of the user on every request to delete the expired ones: a
    query per request, and a cost that grows with the user's logins. Here a request only
    checks its own token's expiry (an expired one is refused and deleted); the others
    are deleted by purge_expired_tokens, hourly.
    """

    def _cleanup_token(self, auth_token) -> bool:
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False


def purge_expired_tokens() -> int:
    deleted, _ = AuthToken.objects.filter(expiry__lt=timezone.now()).delete()
    return deleted


class ApiTokenScheme(KnoxTokenScheme):
    """The API's OpenAPI security scheme: knox's, for the class the API uses."""

    target_class = "shop.api_tokens.ApiTokenAuthentication"
