"""Safe commands: idempotent by Idempotency-Key, invariants under concurrency, If-Match
(guarantee 5)."""
