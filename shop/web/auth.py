"""API login and logout: expiring, hashed, revocable tokens (django-rest-knox).

POST /api/auth/token {"username", "password"} -> {"token", "expiry"}: the token is shown
once; the database keeps only its hash. It expires after REST_KNOX TOKEN_TTL.
POST /api/auth/logout revokes the token the request is made with. Login is throttled per
address and per account, on the counters every sign-in form shares, by authenticate()
itself (shop.web.login_throttle): password guessing is slowed both ways, whatever door.
"""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import exceptions, serializers, status
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
