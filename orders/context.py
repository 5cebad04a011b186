"""Per-request context the write side records (kept free of model imports)."""

import contextvars

# Set per request (or task) so outbox rows and log lines carry the id of what caused them.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_request_id", default=""
)
