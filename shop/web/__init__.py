"""The shared web layer: what every HTTP endpoint of both apps stands on.

Admission and "database busy" (admission, database_busy), throttles, API tokens and
login (api_tokens, auth), the one JSON error body and DRF's exception handler (errors,
exception_handler), request ids and JSON logs (request_ids, logs), OpenAPI hooks
(openapi), staff permission checks (permissions), the web's metrics (metrics), the
request parser (parsers) and the ASGI handler (asgi_handler).

It imports Django, DRF and libraries only: never `orders`, `readmodels` or the wiring
in `shop` (import-linter checks it, see pyproject.toml).
"""
