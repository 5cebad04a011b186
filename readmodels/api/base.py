"""The base of every projected read: consistency headers, the SLO check and the fallback.

A projected view names its read model and what to do when that model is down or
lagging past its SLO: answer from PostgreSQL (`strong-fallback`) or 503 with
Retry-After. Every answer says how fresh it is in headers. Its token wait happened
before the view runs (readmodels.api.early_waits, readmodels.api.waits).
"""

from __future__ import annotations

import time

from asgiref.sync import async_to_sync
from rest_framework import exceptions, status
from rest_framework.views import APIView

from readmodels import config
from readmodels.api.early_waits import SCOPE_KEY
from readmodels.api.waits import known_user, past_slo, wait_for_token
from readmodels.stores import StoreUnavailable, read_deadline
from shop.web.admission import overloaded_response
from shop.web.metrics import READS


class ReadModelUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "This view is being brought up to date; retry shortly."
    default_code = "read_model_unavailable"


def projected(view_class):
    """The URL's view for a ProjectedReadView: the DRF view, given the wait's outcome.

    Under shop.asgi the token wait already happened in EarlyTokenWaits, holding no
    thread and no database connection; the DRF view (authentication, permissions, the
    read) then runs in the request's thread with the outcome on the request, so it
    never waits again.
    """
    drf_view = view_class.as_view()

    def view(request, *args, **kwargs):
        waited = getattr(request, "scope", {}).get(SCOPE_KEY)
        if waited is not None:
            if waited.overloaded:
                return overloaded_response()
            request.token_wait = waited
        # Else not under shop.asgi (Django's test client, a WSGI server): the view waits
        # in its own thread, once it knows the user.
        return drf_view(request, *args, **kwargs)

    # What Django, DRF and drf-spectacular look for on a DRF view function.
    view.cls = drf_view.cls
    view.initkwargs = drf_view.initkwargs
    view.csrf_exempt = True
    view.projected_read_model = view_class.read_model
    view.projected_slo_model = view_class.slo_model or view_class.read_model
    view.__name__ = drf_view.__name__
    view.__doc__ = drf_view.__doc__
    return view


class ProjectedReadView(APIView):
    """Subclasses set read_model, slo_model, fallback and implement read (and read_strong).

    Route them through projected(): the wait happens there, before this view runs.
    """

    read_model: str
    slo_model: str | None = None
    fallback: str = "unavailable"  # or "strong"

    def read(self, request, **kwargs):
        raise NotImplementedError

    def read_strong(self, request, **kwargs):
        raise NotImplementedError

    def get(self, request, **kwargs):
        self.consistency_headers = {}
        waited = getattr(request._request, "token_wait", None)
        if waited is None:
            # Routed without projected() (a test or a subclass mounted by hand): the
            # same wait, run from this thread.
            waited = async_to_sync(wait_for_token)(
                self.read_model,
                request._request,
                known_user(request.user.pk if request.user.is_authenticated else None),
                slo_model=self.slo_model,
            )
            if waited.overloaded:
                return overloaded_response()
        if waited.error is not None:
            raise waited.error
        self.source = waited.source
        state = waited.state
        if state is None:
            return self._degrade(request, None, **kwargs)
        if past_slo(state, self.slo_model or self.read_model):
            return self._degrade(request, state, **kwargs)
        self.consistency_headers = {
            "X-Consistency": "eventual",
            "X-Read-Model": self.read_model,
            "X-Read-Model-Lag-Ms": str(state.lag_ms),
            "X-Stale": "true" if waited.reached is False else "false",
            "X-Consistency-Source": waited.source,
        }
        if waited.token is not None:
            self.consistency_headers["X-Consistency-Wait-Ms"] = str(waited.waited_ms)
        # The read itself gets a fixed allowance: every store call in it ends by then.
        deadline = read_deadline.set(time.monotonic() + config.read_timeout())
        try:
            return self.read(request, **kwargs)
        except StoreUnavailable:
            pass
        finally:
            read_deadline.reset(deadline)
        return self._degrade(request, None, **kwargs)

    def _why_degraded(self, state) -> tuple[str, str]:
        """(X-Fallback-Reason, a sentence for people) of a view that cannot answer."""
        if state is None:
            return "store-unavailable", f"The {self.read_model} view's store did not answer."
        if not state.reported:
            return "not-reported", f"The {self.read_model} view has not reported its progress yet."
        slo = config.slo_seconds(self.slo_model or self.read_model)
        return "behind", (
            f"The {self.read_model} view is {state.lag_ms / 1000:.1f} s behind, past its "
            f"{slo:g} s lag SLO."
        )

    def _degrade(self, request, state, **kwargs):
        lag = "" if state is None else str(state.lag_ms)
        reason, sentence = self._why_degraded(state)
        if self.fallback == "strong":
            self.consistency_headers = {
                "X-Consistency": "strong-fallback",
                "X-Read-Model": self.read_model,
                "X-Stale": "false",
                "X-Fallback-Reason": reason,
            }
            if lag:
                self.consistency_headers["X-Read-Model-Lag-Ms"] = lag
            return self.read_strong(request, **kwargs)
        self.consistency_headers = {"X-Read-Model": self.read_model, "Retry-After": "1",
                                    "X-Fallback-Reason": reason}
        if lag:
            self.consistency_headers["X-Read-Model-Lag-Ms"] = lag
        raise ReadModelUnavailable(f"{sentence} Retry shortly.")

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        headers = getattr(self, "consistency_headers", {})
        if hasattr(self, "source"):
            headers.setdefault("X-Consistency-Source", self.source)
        for name, value in headers.items():
            response[name] = value
        if response.status_code < 500 or response.status_code == 503:
            consistency = headers.get("X-Consistency", "unavailable")
            if headers.get("X-Stale") == "true":
                consistency = "stale"
            READS.labels(self.read_model, consistency).inc()
        return response
