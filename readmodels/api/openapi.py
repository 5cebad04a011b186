"""OpenAPI text of the projected reads and the consistency stream.

Each projected view states, per endpoint, that it is eventual, which read model and
store answer it, its lag SLO and what happens when the view is down or behind; and the
consistency parameters and headers every projected read shares.
"""

from __future__ import annotations

import copy

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view

from readmodels import config, projectors
from readmodels.api.tokens import MAX_WAIT_SCHEMA, TOKEN_OR_OPT_OUT_SCHEMA, TOKEN_SCHEMA


def _response_header(name: str, description: str, *, integer: bool = False, enum=None):
    return OpenApiParameter(
        name, OpenApiTypes.INT if integer else OpenApiTypes.STR, OpenApiParameter.HEADER,
        response=True, enum=enum, description=description,
    )


def projected_parameters() -> list[OpenApiParameter]:
    return [
        OpenApiParameter(
            "X-Consistency-Token",
            TOKEN_OR_OPT_OUT_SCHEMA,
            OpenApiParameter.HEADER,
            description=(
                "A token from a command response: the read waits (up to max_wait_ms) "
                "until this view includes that command's changes. Without it, a signed-in "
                "user's read waits for that user's own latest command (session "
                "consistency; remembered for "
                f"{config.session_token_ttl_seconds()} s). `none` opts out: answer at once. "
                "Anything else, empty included, is a 400 `invalid_consistency_token`."
            ),
        ),
        OpenApiParameter(
            "consistency_token",
            TOKEN_OR_OPT_OUT_SCHEMA,
            OpenApiParameter.QUERY,
            description="The same as X-Consistency-Token, for a client that cannot send "
                        "headers (the header wins when both are sent).",
        ),
        OpenApiParameter(
            "consistency",
            OpenApiTypes.STR,
            OpenApiParameter.QUERY,
            enum=["none"],
            description="`none`: do not wait for any token, not even the session's (any "
                        "other value is a 400 `invalid_consistency`).",
        ),
        OpenApiParameter(
            "max_wait_ms",
            MAX_WAIT_SCHEMA,
            OpenApiParameter.QUERY,
            description=(
                f"How long to wait for the token, in ms (default "
                f"{config.max_wait_ms_default()}; a longer wait is shortened to "
                f"{config.max_wait_ms_cap()}). Not a whole number, or empty: a 400 "
                "`invalid_max_wait`."
            ),
        ),
        _response_header(
            "X-Consistency",
            "`eventual`: from a projected view; `strong-fallback`: the view was down "
            "or too far behind, so this answer comes from PostgreSQL.",
            enum=["eventual", "strong-fallback"],
        ),
        _response_header("X-Read-Model", "The read model that answered."),
        _response_header(
            "X-Read-Model-Lag-Ms",
            "Age of the oldest change not yet visible in that view; 0 when caught up.",
            integer=True,
        ),
        _response_header(
            "X-Stale",
            "true when the governing token (the request's, or for an opt-out or a "
            "session read the user's latest command) was not reached in time.",
            enum=["true", "false"],
        ),
        _response_header(
            "X-Consistency-Source",
            "Which token governed the read: `request` (sent by the client), `session` "
            "(the signed-in user's latest command, remembered by the server) or `none`.",
            enum=["request", "session", "none"],
        ),
        _response_header(
            "X-Consistency-Wait-Ms",
            "How long the read waited for its token, in ms (only when one governed).",
            integer=True,
        ),
        _response_header(
            "X-Fallback-Reason",
            "Why the view could not answer (on a strong-fallback or a 503): `behind` (past "
            "its lag SLO; a token read then does not wait), `store-unavailable`, "
            "`not-reported`.",
            enum=["behind", "store-unavailable", "not-reported"],
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
        f"{slo:g} s. A signed-in user reads their own latest write by default (session "
        f"consistency); send `X-Consistency-Token` for another token, or `none` to not "
        f"wait. When the view is "
        f"down or behind its SLO, {then}."
    )


def projected_read_schema(*, parameters=(), responses, summary: str):
    """The schema of a ProjectedReadView's GET, from what the view says of itself.

    Its query parameters and output come from the view; the consistency parameters and
    headers, and a description of its read model, store, SLO and fallback from its
    read_model, slo_model and fallback.
    """

    def decorate(view_class):
        store = projectors.get(view_class.read_model).store
        return extend_schema_view(
            get=extend_schema(
                parameters=[*parameters, *projected_parameters()],
                description=eventual_description(
                    view_class.slo_model or view_class.read_model,
                    STORE_NAMES[store.name],
                    view_class.fallback,
                ),
                responses={200: responses},
                summary=summary,
            )
        )(view_class)

    return decorate


STORE_NAMES = {"elasticsearch": "Elasticsearch", "redis": "Redis"}


_VIEW = "|".join(projectors.PROJECTORS)
VIEWS_SCHEMA = {"type": "string", "pattern": f"^(?:{_VIEW})(?:,(?:{_VIEW}))*$"}

STREAM_PATH = "/api/consistency/stream"
STREAM_OPERATION = {
    "operationId": "consistency_stream",
    "summary": "Server-sent events: tell me when these views include my write.",
    "description": (
        "A `text/event-stream` that needs no login (it reveals only whether views have "
        "passed a token, never data). Events, each `event: <name>` and `data: <json>`:\n"
        "- `start` `{views, max_wait_ms}`\n"
        "- `caught_up` `{view, waited_ms}`, once per view as soon as it includes the token\n"
        "- `timeout` `{views, waited_ms}`: the views still behind at the deadline\n"
        "- `error` `{code, message}`: a store did not answer\n"
        "- `end` `{}`, then the stream closes.\n"
        "Bad input answers 400 JSON before any event; 503 `overloaded` with Retry-After "
        "when the process holds as many waiting readers as it allows; 429 `throttled` when "
        "this client opened too many streams lately, `too_many_streams` when it holds "
        "too many open."
    ),
    "tags": ["api"],
    "parameters": [
        {"name": "token", "in": "query", "required": True, "schema": TOKEN_SCHEMA,
         "description": "An X-Consistency-Token from a command response (400 "
                        "`invalid_consistency_token` otherwise)."},
        {"name": "views", "in": "query", "required": True, "schema": VIEWS_SCHEMA,
         "description": "Comma-separated read models, none empty: "
                        f"{', '.join(projectors.PROJECTORS)} (400 `invalid_views` otherwise)."},
        {"name": "max_wait_ms", "in": "query", "schema": MAX_WAIT_SCHEMA,
         "description": "How long to wait, in ms (default 10000; a longer wait is shortened "
                        "to 60000). Not a whole number, or empty: a 400 `invalid_max_wait`."},
    ],
    "responses": {
        "200": {
            "description": "The event stream.",
            # Each event, as an event-stream parser reads it.
            "content": {"text/event-stream": {"schema": {
                "type": "object",
                "required": ["event", "data"],
                "properties": {
                    "event": {"type": "string",
                              "enum": ["start", "caught_up", "timeout", "error", "end"]},
                    "data": {"type": "string", "description": "A JSON object."},
                },
            }}},
        },
        "429": {
            "description": "`throttled` or `too_many_streams`: retry after Retry-After seconds.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
    },
}


def add_stream(result, generator, request, public):
    """The SSE endpoint is a plain async view that drf-spectacular cannot see."""
    result.setdefault("paths", {}).setdefault(STREAM_PATH, {"get": copy.deepcopy(STREAM_OPERATION)})
    return result
