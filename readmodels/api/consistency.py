"""Consistency for projected reads, in one place: token waits, lag, staleness, fallback.

A projected view names its read model and what to do when that model is down or
lagging past its SLO: answer from PostgreSQL (`strong-fallback`) or 503 with
Retry-After. Every answer says how fresh it is in headers.
"""

from __future__ import annotations

import time

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, status
from rest_framework.views import APIView

from orders.metrics import READS
from orders.outbox import InvalidToken, decode_token
from readmodels import config
from readmodels.pipeline import progress
from readmodels.stores import StoreUnavailable


class ReadModelUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "This view is being brought up to date; retry shortly."
    default_code = "read_model_unavailable"


class InvalidConsistencyToken(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "X-Consistency-Token is not a token this shop issued."
    default_code = "invalid_consistency_token"


class InvalidMaxWait(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "max_wait_ms must be a whole number of milliseconds, 0 or more."
    default_code = "invalid_max_wait"


def projected_parameters() -> list[OpenApiParameter]:
    return [
        OpenApiParameter(
            "X-Consistency-Token",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            description=(
                "A token from a command response. The read waits (up to max_wait_ms) "
                "until this view includes that command's changes."
            ),
        ),
        OpenApiParameter(
            "max_wait_ms",
            OpenApiTypes.INT,
            OpenApiParameter.QUERY,
            description=(
                f"How long to wait for the token, in ms (default "
                f"{config.max_wait_ms_default()}, at most {config.max_wait_ms_cap()})."
            ),
        ),
        OpenApiParameter(
            "X-Consistency",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            response=True,
            enum=["eventual", "strong-fallback"],
            description=(
                "`eventual`: from a projected view; `strong-fallback`: the view was down "
                "or too far behind, so this answer comes from PostgreSQL."
            ),
        ),
        OpenApiParameter(
            "X-Read-Model",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            response=True,
            description="The read model that answered.",
        ),
        OpenApiParameter(
            "X-Read-Model-Lag-Ms",
            OpenApiTypes.INT,
            OpenApiParameter.HEADER,
            response=True,
            description="Age of the oldest change not yet visible in that view; 0 when caught up.",
        ),
        OpenApiParameter(
            "X-Stale",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            response=True,
            enum=["true", "false"],
            description="true when a token was given and the view had not reached it in time.",
        ),
    ]


def eventual_description(read_model: str, store: str, fallback: str) -> str:
    slo = config.slo_seconds(read_model)
    then = (
        "it answers from PostgreSQL with `X-Consistency: strong-fallback`"
        if fallback == "strong"
        else "it answers 503 with Retry-After"
    )
    return (
        f"Consistency: **eventual**, from the `{read_model}` read model ({store}); lag SLO "
        f"{slo:g} s. Send `X-Consistency-Token` to read your own write. When the view is "
        f"down or behind its SLO, {then}."
    )


class ProjectedReadView(APIView):
    """Subclasses set read_model, slo_model, fallback and implement read (and read_strong)."""

    read_model: str
    slo_model: str | None = None
    fallback: str = "unavailable"  # or "strong"

    def read(self, request, **kwargs):
        raise NotImplementedError

    def read_strong(self, request, **kwargs):
        raise NotImplementedError

    def _token(self, request):
        raw = request.headers.get("X-Consistency-Token") or request.query_params.get(
            "consistency_token"
        )
        if not raw:
            return None
        try:
            return decode_token(raw)
        except InvalidToken:
            raise InvalidConsistencyToken() from None

    def _max_wait_ms(self, request) -> int:
        raw = request.query_params.get("max_wait_ms")
        if raw is None or raw == "":
            return config.max_wait_ms_default()
        if not raw.isdigit() or len(raw) > 9:
            raise InvalidMaxWait()
        return min(int(raw), config.max_wait_ms_cap())

    def get(self, request, **kwargs):
        self.consistency_headers = {}
        token = self._token(request)
        max_wait_ms = self._max_wait_ms(request)
        started = time.monotonic()
        slo_ms = config.slo_seconds(self.slo_model or self.read_model) * 1000
        try:
            if token is not None:
                reached, state = progress.wait_for(
                    self.read_model, token, started + max_wait_ms / 1000
                )
            else:
                reached, state = None, progress.state(self.read_model)
            if not state.reported or state.lag_ms > slo_ms:
                return self._degrade(request, state, **kwargs)
            self.consistency_headers = {
                "X-Consistency": "eventual",
                "X-Read-Model": self.read_model,
                "X-Read-Model-Lag-Ms": str(state.lag_ms),
                "X-Stale": "true" if reached is False else "false",
            }
            if token is not None:
                waited_ms = int((time.monotonic() - started) * 1000)
                self.consistency_headers["X-Consistency-Wait-Ms"] = str(waited_ms)
            return self.read(request, **kwargs)
        except StoreUnavailable:
            return self._degrade(request, None, **kwargs)

    def _degrade(self, request, state, **kwargs):
        lag = "" if state is None else str(state.lag_ms)
        if self.fallback == "strong":
            self.consistency_headers = {
                "X-Consistency": "strong-fallback",
                "X-Read-Model": self.read_model,
                "X-Stale": "false",
            }
            if lag:
                self.consistency_headers["X-Read-Model-Lag-Ms"] = lag
            return self.read_strong(request, **kwargs)
        self.consistency_headers = {"X-Read-Model": self.read_model, "Retry-After": "1"}
        if lag:
            self.consistency_headers["X-Read-Model-Lag-Ms"] = lag
        raise ReadModelUnavailable()

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        headers = getattr(self, "consistency_headers", {})
        for name, value in headers.items():
            response[name] = value
        if response.status_code < 500 or response.status_code == 503:
            consistency = headers.get("X-Consistency", "unavailable")
            if headers.get("X-Stale") == "true":
                consistency = "stale"
            READS.labels(self.read_model, consistency).inc()
        return response
