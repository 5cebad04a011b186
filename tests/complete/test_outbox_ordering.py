"""Complete: a reader following orders.outbox.read_after never skips a committed row.

Positions are taken at INSERT, commits happen in another order. These tests hold
transactions open on purpose while later ones commit, and check that a reader
walking (xid, position) below the snapshot's xmin sees every row exactly once.
Waits are on conditions (events, a commit counter, rows appearing) with deadlines.
"""

from __future__ import annotations

import base64
import random
import threading
from collections import defaultdict

import pytest
from django.db import connection, transaction

from orders import commands, outbox
from orders.models import OutboxMessage
from orders.outbox import MAX_POSITION, InvalidToken, Position, decode_token, encode_token
from tests.support.concurrency import DEADLINE_SECONDS, in_thread, join_all
from tests.support.waiting import wait_until

WRITERS = 8
COMMANDS_PER_WRITER = 25


def _all_rows() -> dict[int, OutboxMessage]:
    return {r.position: r for r in OutboxMessage.objects.all()}


def _read_until(checkpoint: Position, done, *, limit: int = 100, what: str = ""):
    """Read batches from checkpoint until done(rows_so_far, last_batch); return (rows, checkpoint)."""
    seen: list[outbox.OutboxRow] = []

    def step():
        nonlocal checkpoint
        batch = outbox.read_after(checkpoint, limit=limit)
        assert batch.checkpoint_after >= checkpoint
        seen.extend(batch.rows)
        checkpoint = batch.checkpoint_after
        return done(seen, batch)

    wait_until(step, DEADLINE_SECONDS, interval=0.005, message=what)
    return seen, checkpoint


@pytest.mark.django_db(transaction=True)
def test_a_reader_sees_every_row_once_while_commits_come_out_of_order(make_customer, make_product):
    rng = random.Random(20240607)
    # Every writer owns its customer and products; two products are shared by all.
    owned = [
        (make_customer(balance_cents=10**8), [make_product(price_cents=100, stock=10**6) for _ in range(2)])
        for _ in range(WRITERS)
    ]
    shared = [make_product(price_cents=100, stock=10**6) for _ in range(2)]
    start = Position.start()

    commit_lock = threading.Lock()
    commits = 0  # commits done so far by all writers, guarded by commit_lock
    commit_made = threading.Condition(commit_lock)
    commit_sequence: dict[int, int] = {}  # outbox position -> order of its commit
    held_transactions = 0
    reader_may_stop = threading.Event()
    failures: list[BaseException] = []

    def command(writer: int, step: int, rand: random.Random):
        customer, products = owned[writer]
        kind = step % 5
        if kind == 0:
            return commands.top_up_balance(customer_id=customer.pk, amount_cents=rand.randint(1, 100))
        if kind == 1:
            return commands.restock_product(product_id=products[step % 2].pk, quantity=1)
        if kind == 2:
            lines = [commands.LineRequest(product_id=p.pk, quantity=1) for p in products]
            return commands.place_order(customer_id=customer.pk, lines=lines)
        if kind == 3:
            return commands.restock_product(product_id=shared[step % 2].pk, quantity=1)
        # An order over an owned and a shared product, listed in either order.
        lines = [
            commands.LineRequest(product_id=products[0].pk, quantity=1),
            commands.LineRequest(product_id=shared[step % 2].pk, quantity=1),
        ]
        rand.shuffle(lines)
        return commands.place_order(customer_id=customer.pk, lines=lines)

    def note_commit(positions: list[int]) -> None:
        nonlocal commits
        with commit_made:
            commits += 1
            for p in positions:
                commit_sequence[p] = commits
            commit_made.notify_all()

    def writer(index: int) -> None:
        nonlocal held_transactions
        rand = random.Random(rng.random())
        try:
            for step in range(COMMANDS_PER_WRITER):
                touches_shared = step % 5 in (3, 4)
                if touches_shared or rand.random() < 0.5:
                    result = command(index, step, rand)
                    positions = _positions_of(result)
                else:
                    # Hold the transaction open after its outbox insert until others
                    # have committed (or briefly, if they are all holding too).
                    with transaction.atomic():
                        result = command(index, step, rand)
                        positions = _positions_of(result)
                        with commit_made:
                            target = commits + 2
                            commit_made.wait_for(
                                lambda t=target: commits >= t, timeout=rand.uniform(0.01, 0.05)
                            )
                            held_transactions += 1
                note_commit(positions)
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)
        finally:
            connection.close()

    seen: list[outbox.OutboxRow] = []
    batches = 0

    def reader() -> None:
        nonlocal batches
        rand = random.Random(rng.random())
        checkpoint = start
        try:
            while True:
                batch = outbox.read_after(checkpoint, limit=rand.randint(1, 4))
                batches += 1
                assert batch.checkpoint_after >= checkpoint, "the checkpoint moved backwards"
                for row in batch.rows:
                    assert row.commit_position > checkpoint
                    assert batch.checkpoint_after.covers(row.commit_position)
                assert batch.rows == sorted(batch.rows, key=lambda r: r.commit_position)
                seen.extend(batch.rows)
                checkpoint = batch.checkpoint_after
                if reader_may_stop.is_set() and not batch.rows and checkpoint.covers(final_target):
                    return
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)
        finally:
            connection.close()

    final_target = Position(2**63 - 1, MAX_POSITION)  # replaced before the reader may stop
    reader_thread, _ = in_thread(reader, name="outbox-reader")
    writer_threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(WRITERS)]
    for thread in writer_threads:
        thread.start()
    join_all(writer_threads)
    table = _all_rows()
    final_target = max(Position(r.xid, r.position) for r in table.values())
    reader_may_stop.set()
    join_all([reader_thread], timeout=DEADLINE_SECONDS)

    assert not failures, failures
    positions_seen = [r.position for r in seen]
    assert len(positions_seen) == len(set(positions_seen)), "a row was read twice"
    assert set(positions_seen) == set(table), (
        f"skipped {sorted(set(table) - set(positions_seen))[:20]}, "
        f"unknown {sorted(set(positions_seen) - set(table))[:20]}"
    )
    assert len(table) >= WRITERS * COMMANDS_PER_WRITER
    assert [r.commit_position for r in seen] == sorted(r.commit_position for r in seen)

    # Every aggregate's versions arrive exactly once each; the aggregates only one
    # writer touches (one transaction after the other) arrive in increasing order.
    versions = defaultdict(list)
    for row in seen:
        versions[(row.aggregate_type, row.aggregate_id)].append(row.aggregate_version)
    shared_keys = {("product", str(p.pk)) for p in shared}
    for key, seen_versions in versions.items():
        expected = sorted(
            r.aggregate_version for r in table.values() if (r.aggregate_type, r.aggregate_id) == key
        )
        assert sorted(seen_versions) == expected == list(range(expected[0], expected[-1] + 1)), key
        if key not in shared_keys:
            assert seen_versions == expected, key

    # The test did produce the gap: rows committed after rows with higher positions.
    by_position = sorted(commit_sequence.items())
    out_of_order = sum(1 for (_, a), (_, b) in zip(by_position, by_position[1:], strict=False) if a > b)
    assert held_transactions > 0 and out_of_order > 0, (held_transactions, out_of_order)
    assert batches > 1


def _positions_of(result) -> list[int]:
    """The outbox positions a command just wrote (all rows of its transaction's xid)."""
    return list(OutboxMessage.objects.filter(xid=result.position.xid).values_list("position", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_row_committed_early_is_held_back_until_an_older_open_transaction_ends(make_product):
    product_a, product_b = make_product(), make_product()
    checkpoint = outbox.high_water_mark()
    setup_rows = set(_all_rows())
    a_written, release_a = threading.Event(), threading.Event()
    a_xid = []

    def transaction_a():
        with transaction.atomic():
            result = commands.restock_product(product_id=product_a.pk, quantity=1)
            a_xid.append(result.position.xid)
            a_written.set()
            assert release_a.wait(DEADLINE_SECONDS)
        return result.position

    thread_a, outcome_a = in_thread(transaction_a, name="transaction-A")
    try:
        assert a_written.wait(DEADLINE_SECONDS)
        b = commands.restock_product(product_id=product_b.pk, quantity=1).position  # committed
        assert outcome_a.value is None  # A is still open

        # A position-only reader would see B's row now and move past A's lower position.
        committed = set(OutboxMessage.objects.values_list("position", flat=True)) - setup_rows
        assert committed == {b.position}

        # The xid reader stops below A: B's row is not returned yet, and the checkpoint
        # does not pass A's xid (wait until it has read everything it can).
        early, checkpoint = _read_until(
            checkpoint,
            lambda rows, batch: batch.rows == [],
            what="the reader to catch up to the horizon",
        )
        assert [r.position for r in early if r.position not in setup_rows] == []
        assert a_xid[0] < b.xid
        assert checkpoint < Position(a_xid[0], 0)
        assert outbox.read_after(checkpoint, limit=100).horizon <= a_xid[0]
    finally:
        release_a.set()
        join_all([thread_a])
    assert outcome_a.error is None, outcome_a.error
    a = outcome_a.value
    assert a.xid == a_xid[0] and a.position < b.position

    late, _ = _read_until(
        checkpoint,
        lambda rows, batch: b.position in {r.position for r in rows},
        limit=1,
        what="A's and B's rows",
    )
    fresh = [r for r in late if r.position not in setup_rows]
    assert [(r.xid, r.position) for r in fresh] == [(a.xid, a.position), (b.xid, b.position)]
    assert [r.aggregate_id for r in fresh] == [str(product_a.pk), str(product_b.pk)]


@pytest.mark.django_db(transaction=True)
def test_a_row_with_a_lower_position_but_a_higher_xid_is_read_after_the_checkpoint_passed_it(make_product):
    """B takes its xid first, A inserts first; B commits. (xid, position) order is B, A."""
    product_a, product_b = make_product(), make_product()
    checkpoint = outbox.high_water_mark()
    setup_rows = set(_all_rows())
    b_has_xid, go_b, a_written, release_a = (threading.Event() for _ in range(4))
    a_xid = []

    def transaction_b():
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_current_xact_id()::text")  # assigns B's xid now
                xid = int(cursor.fetchone()[0])
            b_has_xid.set()
            assert go_b.wait(DEADLINE_SECONDS)
            result = commands.restock_product(product_id=product_b.pk, quantity=1)
            assert result.position.xid == xid
        return result.position

    def transaction_a():
        with transaction.atomic():
            result = commands.restock_product(product_id=product_a.pk, quantity=1)
            a_xid.append(result.position.xid)
            a_written.set()
            assert release_a.wait(DEADLINE_SECONDS)
        return result.position

    thread_b, outcome_b = in_thread(transaction_b, name="transaction-B")
    thread_a = None
    try:
        assert b_has_xid.wait(DEADLINE_SECONDS)
        thread_a, outcome_a = in_thread(transaction_a, name="transaction-A")
        assert a_written.wait(DEADLINE_SECONDS)
        go_b.set()
        join_all([thread_b])
        assert outcome_b.error is None, outcome_b.error
        b = outcome_b.value

        # B's row is returned while A is open; the checkpoint passes B's position,
        # which is higher than A's.
        early, checkpoint = _read_until(
            checkpoint,
            lambda rows, batch: b.position in {r.position for r in rows},
            what="B's row",
        )
        assert [r.position for r in early if r.position not in setup_rows] == [b.position]
        assert checkpoint.covers(b)
        assert checkpoint < Position(a_xid[0], 0)
    finally:
        release_a.set()
        go_b.set()
        join_all([t for t in (thread_a, thread_b) if t is not None])
    assert outcome_a.error is None, outcome_a.error
    a = outcome_a.value
    assert a.position < b.position and a.xid > b.xid

    late, _ = _read_until(
        checkpoint, lambda rows, batch: a.position in {r.position for r in rows}, what="A's row"
    )
    assert [r.position for r in late if r.position not in setup_rows] == [a.position]


@pytest.mark.django_db(transaction=True)
def test_versions_of_one_aggregate_can_arrive_out_of_order_so_consumers_gate_on_version(
    make_customer, make_order, monkeypatch
):
    """Commit order is not version order across transactions that lock late.

    pay_order takes its xid when it locks the order, and only later changes the
    customer. A top-up of that customer that starts in between gets a higher xid but
    commits first, so (xid, position) order delivers the customer's newer version
    before the older one. Both arrive, once each; projectors rebuild from current
    state and gate writes on the version, so the view still ends at the newest.
    """
    customer = make_customer(balance_cents=5000)  # version 2
    order = make_order(customer=customer)
    checkpoint = outbox.high_water_mark()
    paying, resume_payment = threading.Event(), threading.Event()
    real_check_version = commands._check_version

    def pausing_check_version(actual, expected):
        if threading.current_thread().name == "payment":
            paying.set()
            assert resume_payment.wait(DEADLINE_SECONDS)
        return real_check_version(actual, expected)

    monkeypatch.setattr(commands, "_check_version", pausing_check_version)
    thread, outcome = in_thread(lambda: commands.pay_order(order_id=order.pk).position, name="payment")
    try:
        assert paying.wait(DEADLINE_SECONDS)  # the order is locked: the payment has its xid
        top_up = commands.top_up_balance(customer_id=customer.pk, amount_cents=1).position
    finally:
        resume_payment.set()
        join_all([thread])
    assert outcome.error is None, outcome.error
    payment = outcome.value
    assert payment.xid < top_up.xid

    rows, _ = _read_until(
        checkpoint,
        lambda rows, batch: {payment.position, top_up.position} <= {r.position for r in rows},
        what="both rows",
    )
    customer_rows = [
        (r.event_type, r.aggregate_version)
        for r in rows
        if r.aggregate_type == "customer" and r.aggregate_id == str(customer.pk) and r.aggregate_version > 2
    ]
    assert customer_rows == [("CustomerCharged", 4), ("BalanceToppedUp", 3)]


@pytest.mark.django_db  # a token names the database's cluster
def test_tokens_round_trip():
    for position in [
        Position(0, 0),
        Position(1, 2),
        Position(123456789, 987654321),
        Position(2**63 - 1, MAX_POSITION),
    ]:
        token = encode_token(position)
        assert decode_token(token) == position
        assert token.isascii() and "=" not in token and "." not in token


@pytest.mark.django_db
def test_tokens_are_signed_with_the_secret_key(settings):
    """A position cannot be read back from a token unless the shop's key signed it."""
    settings.SECRET_KEY = "the-shops-key"
    token = encode_token(Position(5, 6))
    settings.SECRET_KEY = "another-key"
    with pytest.raises(InvalidToken):
        decode_token(token)
    # During a key rotation the old key is a fallback: tokens in flight stay valid.
    settings.SECRET_KEY_FALLBACKS = ["the-shops-key"]
    assert decode_token(token) == Position(5, 6)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        # A real token with what base64's decoder would skip: not what the schema states.
        f" {encode_token(Position(1, 2), cluster='1')} ",
        f"{encode_token(Position(1, 2), cluster='1')}!",
        "!!!!",
        "é",
        # Well-formed but unsigned: the old format, and a bare position.
        base64.urlsafe_b64encode(b"ct1.1.2").decode(),
        base64.urlsafe_b64encode(b"ct2.1.2").decode(),
        base64.urlsafe_b64encode(f"ct2.{2**62}.1".encode()).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_garbage_and_unsigned_tokens_are_rejected(token):
    with pytest.raises(InvalidToken):
        decode_token(token)


@pytest.mark.parametrize(
    "position",
    [Position(-1, 2), Position(1, -2), Position(2**63, 2), Position(1, MAX_POSITION + 1)],
)
@pytest.mark.django_db
def test_signed_tokens_outside_the_position_range_are_rejected(position):
    with pytest.raises(InvalidToken):
        decode_token(encode_token(position))


@pytest.mark.django_db(transaction=True)
def test_placing_an_order_holds_a_transaction_id_for_one_statement_and_the_commit(
    make_customer, make_product
):
    """Every running transaction id holds back every change committed after it (the
    reader stops at the snapshot's xmin), so the hottest command takes its id as late as
    it can: checks on a plain read first, then the reservation (which takes the id), one
    statement for the order, its lines and its outbox rows, and the commit."""
    customer = make_customer()
    first, second = make_product(stock=5), make_product(stock=5)
    raw = connection.cursor().connection  # psycopg's own, outside the wrappers below
    statements_with_an_id: list[str] = []

    def note(execute, sql, params, many, context):
        with raw.cursor() as cursor:
            holds_an_id = cursor.execute(
                "SELECT pg_current_xact_id_if_assigned() IS NOT NULL"
            ).fetchone()[0]
        if holds_an_id:
            statements_with_an_id.append(sql.split()[0])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(note):
        placed = commands.place_order(customer_id=customer.pk, lines=[
            commands.LineRequest(product_id=second.pk, quantity=1),
            commands.LineRequest(product_id=first.pk, quantity=2),
        ])

    assert statements_with_an_id == ["WITH"]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.stock, second.stock) == (3, 4)
    order = placed.value
    assert [(line.product_id, line.quantity) for line in order.lines.all()] == [
        (second.pk, 1), (first.pk, 2)]
    assert list(order.lines.all()) == list(type(order).objects.get(pk=order.pk).lines.all())
    assert OutboxMessage.objects.filter(xid=placed.position.xid).count() == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("xids", [[998, 999, 1000, 1001], [9, 99, 100, 12, 1000]])
def test_full_batches_follow_numeric_transaction_order_where_the_xids_gain_a_digit(xids):
    """Transaction ids gain a digit as a database ages (999 -> 1000): the reader's order,
    and so which rows a full batch holds and where its checkpoint goes, is numeric.

    Sorted as text, "1000" comes before "999": a batch of one took xid 1000's row, its
    checkpoint passed 999, and that row was never read (found by the fault suite, whose
    fresh clusters cross xid 1000 while a store outage builds a backlog).
    """
    kind = "digits"
    assert outbox.safe_horizon() > max(xids)  # every one of them has ended
    with connection.cursor() as cursor:
        for xid in xids:  # long-ended transactions: all below the horizon
            cursor.execute(
                f"INSERT INTO {OutboxMessage._meta.db_table} (aggregate_type, aggregate_id, "
                "aggregate_version, event_type, payload, partition_key, xid, request_id) "
                "VALUES (%s, %s, 1, 'Probe', '{}', %s, %s::text::xid8, '')",
                [kind, str(xid), str(xid), str(xid)],
            )
    checkpoint, read = Position.start(), []
    for _ in range(len(xids) + 1):
        batch = outbox.read_after(checkpoint, limit=1, aggregate_types=[kind])
        read += [row.xid for row in batch.rows]
        checkpoint = batch.checkpoint_after
        if batch.complete:
            break
    assert read == sorted(xids)
