"""API login, logout and password change: expiring, hashed, revocable tokens (django-rest-knox).

POST /api/auth/token {"username", "password"} -> {"token", "expiry"}: the token is shown
once; the database keeps only its hash. It expires after REST_KNOX TOKEN_TTL.
POST /api/auth/logout revokes the token the request is made with. Login is throttled per
address and per account, on the counters every sign-in form shares, by authenticate()
itself (shop.web.login_throttle): password guessing is slowed both ways, whatever door.
POST /api/auth/password {"old_password", "new_password"} changes the caller's password
under AUTH_PASSWORD_VALIDATORS' rules, which revokes all of the user's API tokens
(shop.web.password_changes), the one sent with it too.
"""

from __future__ import annotations

from django.contrib.auth import authenticate, password_validation, update_session_auth_hash
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.fields import get_error_detail
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from shop.web.api_tokens import ApiTokenAuthentication
from shop.web.parsers import JSONParser


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class InvalidCredentials(exceptions.AuthenticationFailed):
    default_code = "invalid_credentials"
    default_detail = "Unable to log in with these credentials."


class LoginView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    # Form posts too, as DRF's obtain_auth_token took them (README's curl example).
    parser_classes = [JSONParser, FormParser]
    # Not the default command throttle: authenticate() counts the attempt on the login
    # counters and raises LoginThrottled (a 429 `throttled`) over their limits.
    throttle_classes: list = []
    counts_passwords = True  # so its schema declares that 429 (shop.web.openapi)

    @extend_schema(
        request=LoginSerializer,
        responses={200: inline_serializer("ApiToken", {
            "token": serializers.CharField(), "expiry": serializers.DateTimeField(),
        })},
        auth=[],
    )
    def post(self, request):
        data = LoginSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(
            request=request._request,
            username=data.validated_data["username"],
            password=data.validated_data["password"],
        )
        if user is None or not user.is_active:
            raise InvalidCredentials()
        instance, token = AuthToken.objects.create(user=user)
        return Response({"token": token, "expiry": instance.expiry})

    def get_authenticate_header(self, request):
        # A failed login is a 401 whose challenge names the scheme to use afterwards.
        return "Token"


class LogoutView(APIView):
    authentication_classes = [ApiTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        request._auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordChangeSerializer(serializers.Serializer):
    old_password = serializers.CharField(max_length=4096, trim_whitespace=False)
    new_password = serializers.CharField(max_length=4096, trim_whitespace=False)


class PasswordChangeView(APIView):
    """Change the caller's own password: the current one, then the new one under the
    shop's password rules. Every API token of the user is revoked by it."""

    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser]
    counts_passwords = True  # the current password, on the login throttles

    @extend_schema(
        request=PasswordChangeSerializer,
        responses={204: None},
        summary="Change your password (revokes all your API tokens, this one too).",
    )
    def post(self, request):
        data = PasswordChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = request.user
        # Through authenticate(): the current password is a password presented, counted
        # on the login throttles like any sign-in (a stolen token cannot guess it fast).
        checked = authenticate(request=request._request, username=user.get_username(),
                               password=data.validated_data["old_password"])
        if checked is None or checked.pk != user.pk:
            raise exceptions.ValidationError(
                {"old_password": [exceptions.ErrorDetail(
                    "This is not your current password.", code="wrong_password")]}
            )
        new_password = data.validated_data["new_password"]
        try:
            password_validation.validate_password(new_password, user)
        except DjangoValidationError as refused:
            raise exceptions.ValidationError({"new_password": get_error_detail(refused)}) from None
        user.set_password(new_password)
        user.save()
        if isinstance(request.successful_authenticator, SessionAuthentication):
            # The session that made the change stays signed in; the user's others end.
            update_session_auth_hash(request._request, user)
        return Response(status=status.HTTP_204_NO_CONTENT)
