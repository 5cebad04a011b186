"""Helpers of the operations tests: run `manage.py projections`, age the outbox, make
poison rows and dead letters, catch projectors up, read metrics."""

from __future__ import annotations

import io

from django.core.management import call_command
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from orders.models import OutboxMessage
from orders.outbox import Position
from readmodels import config, projectors
from readmodels.models import DeadLetter, DeadLetterStatus
from readmodels.pipeline import checkpoints, failures, runner
from tests.support.readside import newest_committed
from tests.support.waiting import wait_until


def commit_a_later_transaction() -> None:
    """Commit a write transaction now. An open transaction holds the horizon only once a
    later one has ended: until then the snapshot's xmax is its own xid and nothing waits
    behind it (on a quiet cluster nothing else may commit meanwhile)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()")


def projections_command(*args) -> tuple[int, str]:
    """Run `manage.py projections ...`; return (exit code, stdout)."""
    out = io.StringIO()
    try:
        call_command("projections", *args, stdout=out)
    except SystemExit as exc:
        return exc.code, out.getvalue()
    return 0, out.getvalue()


def status_lines(output: str) -> dict[str, list[str]]:
    """The table rows of `projections status`, by read model."""
    rows: dict[str, list[str]] = {}
    for line in output.splitlines():
        first = line.split(" ", 1)[0]
        if first in projectors.PROJECTORS:
            rows.setdefault(first, []).append(line)
    return rows


def age_outbox(interval: str, positions: list[int] | None = None) -> None:
    with connection.cursor() as cursor:
        if positions is None:
            cursor.execute(
                f"UPDATE {OutboxMessage._meta.db_table} SET created_at = now() - interval %s",
                [interval],
            )
        else:
            cursor.execute(
                f"UPDATE {OutboxMessage._meta.db_table} SET created_at = now() - interval %s "
                "WHERE position = ANY(%s)",
                [interval, positions],
            )


def change_readmodels_settings(settings, **changes) -> None:
    conf = dict(settings.READMODELS)
    conf.update(changes)
    settings.READMODELS = conf


def run_projector(name: str) -> None:
    """Run every segment of one projector until caught up (a failing row may stop it)."""
    segments = config.segments(name)
    for segment in range(segments):
        try:
            runner.run_segment(projectors.get(name), segment, segments, ignore_backoff=True)
        except failures.RetryLater:
            pass


def covers(name: str, target: Position) -> bool:
    segments = config.segments(name)
    return all(
        Position(c.xid, c.position).covers(target)
        for c in (checkpoints.checkpoint_for(name, s, segments) for s in range(segments))
    )


def catch_up(names=None) -> None:
    """Run these projectors (all by default) until they cover every row committed so far.

    Like project_all, but a failing row only stops a run, to be tried again (and set
    aside once it has used up its attempts). A write transaction anywhere in the
    cluster holds the horizon back, hence the loop.
    """
    names = list(names or projectors.PROJECTORS)
    target = newest_committed()

    def covered():
        for name in names:
            run_projector(name)
        return target is None or all(covers(name, target) for name in names)

    wait_until(covered, timeout=30, message=f"{names} did not reach {target}")


def poison_row() -> OutboxMessage:
    return OutboxMessage.objects.create(
        aggregate_type="order",
        aggregate_id="not-a-uuid",
        aggregate_version=1,
        event_type="OrderPlaced",
        partition_key="1",
        payload={},
    )


def run_until_dead(position: int) -> DeadLetter:
    """Project past a poison row: every projector of orders sets it aside in the end."""
    catch_up()
    return DeadLetter.objects.get(
        projector="order_summary", outbox_position=position, status=DeadLetterStatus.DEAD
    )


def outbox_rows(aggregate_type: str, aggregate_id) -> list[OutboxMessage]:
    return list(
        OutboxMessage.objects.filter(
            aggregate_type=aggregate_type, aggregate_id=str(aggregate_id)
        ).order_by("xid", "position")
    )


def dead_letter_for(order, status=DeadLetterStatus.DEAD) -> DeadLetter:
    """A dead letter as a projector would have left it, for an order that exists."""
    row = outbox_rows("order", order.pk)[-1]
    return DeadLetter.objects.create(
        projector="order_summary",
        outbox_position=row.position,
        outbox_xid=row.xid,
        aggregate_type="order",
        aggregate_id=str(order.pk),
        partition_key=row.partition_key,
        event_type=row.event_type,
        error="RuntimeError: the store refused it",
        attempts=5,
        status=status,
    )


def metric_sample(text: str, name: str, **labels) -> float | None:
    total = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total = (total or 0.0) + sample.value
    return total
