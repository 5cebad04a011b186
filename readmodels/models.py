"""Projection bookkeeping in PostgreSQL: checkpoints and dead letters."""

from django.db import models


class Checkpoint(models.Model):
    """How far one segment of one projector has made the outbox visible in its store.

    Every outbox row at or before (xid, position), in commit order, is visible.
    """

    projector = models.CharField(max_length=64)
    segment = models.PositiveSmallIntegerField(default=0)
    segments = models.PositiveSmallIntegerField(default=1)
    xid = models.BigIntegerField(default=0)
    position = models.BigIntegerField(default=0)
    rows_projected = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    # Consecutive failed runs, and when the next run may try again (backoff).
    failures = models.PositiveIntegerField(default=0)
    retry_after = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["projector", "segment", "segments"], name="checkpoint_unique"
            )
        ]
        ordering = ["projector", "segment"]
        verbose_name = "projection"
        verbose_name_plural = "projections"
        # The projections page and each operation on the read side, granted one by one
        # (the "operators" group has them all).
        permissions = [
            ("view_projections", "Can see the projections page"),
            ("rebuild_read_model", "Can rebuild a read model"),
            ("reconcile_read_model", "Can reconcile a read model"),
            ("repair_read_model", "Can repair a read model's differences"),
            ("retry_dead_letters", "Can retry dead letters"),
            ("discard_dead_letters", "Can discard dead letters"),
        ]

    def __str__(self) -> str:
        return f"{self.projector}[{self.segment}/{self.segments}] @ ({self.xid}, {self.position})"


class DeadLetterStatus(models.TextChoices):
    RETRYING = "retrying"
    DEAD = "dead"
    RESOLVED = "resolved"
    DISCARDED = "discarded"


class DeadLetter(models.Model):
    """An outbox row a projector failed on. After too many attempts it is set aside."""

    projector = models.CharField(max_length=64)
    outbox_position = models.BigIntegerField()
    outbox_xid = models.BigIntegerField()
    aggregate_type = models.CharField(max_length=32)
    aggregate_id = models.CharField(max_length=64)
    partition_key = models.CharField(max_length=64, default="")
    event_type = models.CharField(max_length=64)
    error = models.TextField()
    attempts = models.PositiveIntegerField(default=1)
    status = models.CharField(
        max_length=16, choices=DeadLetterStatus.choices, default=DeadLetterStatus.RETRYING
    )
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["projector", "outbox_position"], name="dead_letter_unique"
            )
        ]
        ordering = ["-last_seen_at"]

    def __str__(self) -> str:
        return f"{self.projector} #{self.outbox_position} ({self.status})"


class ReconcileRun(models.Model):
    """The result of comparing a read model with the write model."""

    projector = models.CharField(max_length=64)
    repair = models.BooleanField(default=False)
    checked = models.PositiveIntegerField(default=0)
    missing = models.PositiveIntegerField(default=0)
    behind = models.PositiveIntegerField(default=0)
    ahead = models.PositiveIntegerField(default=0)
    stray = models.PositiveIntegerField(default=0)
    repaired = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0)
    examples = models.JSONField(default=dict)
    finished_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-finished_at"]

    def __str__(self) -> str:
        return f"reconcile {self.projector} at {self.finished_at:%Y-%m-%d %H:%M}"


class RebuildStatus(models.TextChoices):
    COPYING = "copying"
    CATCHING_UP = "catching_up"
    SWITCHED = "switched"
    DONE = "done"
    FAILED = "failed"


class Rebuild(models.Model):
    """A rebuild of one read model into a new generation; resumable from `cursor`."""

    projector = models.CharField(max_length=64)
    generation = models.PositiveIntegerField()
    previous_generation = models.PositiveIntegerField(null=True)
    status = models.CharField(
        max_length=16, choices=RebuildStatus.choices, default=RebuildStatus.COPYING
    )
    # Outbox position when the copy began: changes after it are caught up from the outbox.
    start_xid = models.BigIntegerField()
    start_position = models.BigIntegerField()
    caught_up_xid = models.BigIntegerField()
    caught_up_position = models.BigIntegerField()
    cursor = models.CharField(max_length=64, blank=True, default="")
    total = models.PositiveIntegerField(default=0)
    copied = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"rebuild {self.projector} g{self.generation} ({self.status})"


class OutboxPurge(models.Model):
    """How far outbox retention may have deleted rows (one row, moved forward only).

    A segment rewound to a place before it (its store came back older than that) cannot
    re-read the rows in between: it projects every aggregate's current state instead.
    """

    xid = models.BigIntegerField(default=0)
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)


class LagSample(models.Model):
    """A projector segment's lag at a moment, for the admin's lag chart."""

    projector = models.CharField(max_length=64)
    segment = models.PositiveSmallIntegerField(default=0)
    at = models.DateTimeField(db_index=True)
    lag_seconds = models.FloatField()
    rows_behind = models.BigIntegerField()

    class Meta:
        ordering = ["at"]
