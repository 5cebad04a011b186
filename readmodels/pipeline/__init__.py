"""The projection pipeline: outbox rows into read models, and where each stands.

- runner: one run of a projector segment (read, write, move the checkpoint, publish).
- writing: a batch's documents, loaded from PostgreSQL and written version-gated.
- failures, blame: whose fault a failure is (a server's or a row's), and dead letters.
- checkpoints, locks: where a segment stands, and the advisory lock that makes it one
  writer at a time.
- store_loss: a store that lost a view gets it projected again.
- progress: each read model's position and lag, published in Redis for readers.
- wake_groups: which task runs which segments, and when (wake-ups, the sweep).

Depends on the projectors and stores only; the operations and the Celery tasks build on it.
"""
