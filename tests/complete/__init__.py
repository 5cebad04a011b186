"""Complete: every committed outbox row reaches every projector that consumes it, whatever the
commit order; a projection from the outbox equals a rebuild from PostgreSQL (guarantee 2)."""
