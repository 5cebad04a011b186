"""The shared web layer: what every HTTP endpoint of both apps stands on.

Admission and "database busy" (admission, database_busy), throttles and the login
throttles' authentication backend (throttles, login_throttle), API tokens, login and
password change (api_tokens, auth, password_changes), the one JSON error body and DRF's
exception handler (errors, exception_handler), request ids and JSON logs (request_ids,
logs), OpenAPI hooks (openapi), staff permission checks (permissions), the web's
metrics (metrics), the request parser (parsers) and the ASGI handler (asgi_handler).
It is an installed app (apps) only so that password_changes' receivers are connected
in every process.

It imports Django, DRF and libraries only: never `orders`, `readmodels` or the wiring
in `shop` (import-linter checks it, see pyproject.toml).
"""
