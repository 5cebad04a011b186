"""A wake-up that finds its segment busy hands the work to the lock holder, not to a
storm of retry tasks: it leaves a rerun request, and the holder runs again for it. A
wake group's task that lets go of the group leaves new rows to the task a commit queued."""

import psycopg
import pytest
from django.db import connection

from orders import commands
from orders.outbox import decode_token
from readmodels import tasks
from readmodels.pipeline import locks, progress, wake_groups
from readmodels.stores import redis_store
from tests.support.readside import project_all

pytestmark = pytest.mark.django_db(transaction=True)

VIEW = "customer_dashboard"


def _other_session():
    db = connection.settings_dict
    return psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
                           user=db["USER"], dbname=db["NAME"], autocommit=True)


def test_a_busy_segment_gets_a_rerun_request_and_the_next_holder_takes_it(
    read_models, make_customer
):
    customer = make_customer()
    project_all()
    later = commands.top_up_balance(customer_id=customer.pk, amount_cents=100)
    flag = wake_groups.rerun_flag(VIEW, 0, 1)
    group = wake_groups.group_of(VIEW, 0)
    with _other_session() as holder:
        # Another worker holds the segment (a real advisory lock in another session).
        holder.execute("SELECT pg_advisory_lock(%s, %s)", list(locks.segment_key(VIEW, 0, 1)))
        tasks.wake(group)
        assert redis_store.client().exists(flag), "the holder was not asked to run again"
        assert not progress.state(VIEW).covers(decode_token(later.token))
        holder.execute("SELECT pg_advisory_unlock(%s, %s)", list(locks.segment_key(VIEW, 0, 1)))
    # The next run through the lock projects the row and consumes the request.
    tasks.wake(group)
    assert progress.state(VIEW).covers(decode_token(later.token))
    assert not redis_store.client().exists(flag)


def test_a_free_segment_projects_without_leaving_a_request(read_models, make_customer):
    customer = make_customer()
    project_all()
    later = commands.top_up_balance(customer_id=customer.pk, amount_cents=100)
    tasks.wake(wake_groups.group_of(VIEW, 0))
    assert progress.state(VIEW).covers(decode_token(later.token))
    assert not redis_store.client().exists(wake_groups.rerun_flag(VIEW, 0, 1))


def test_a_lane_let_go_is_left_to_the_task_a_commit_queued_meanwhile(
    read_models, make_customer, monkeypatch
):
    """A lane's task that found nothing clears the lane's flag and looks once more. A
    commit right after the clear sets the flag and queues a task of its own: the closing
    task leaves the commit's rows to that task instead of projecting them beside it (two
    tasks of one lane held both worker processes of the shipped worker, and the other
    lane's wake-up waited). The commit is real, made the moment the flag is deleted."""
    customer = make_customer()
    project_all()
    lane = wake_groups.group_of(VIEW, 0)
    flag = wake_groups.wake_flag(lane)
    real = redis_store.client()
    committed = []

    class CommitRightAfterTheClear:
        """The real client; releasing the lane's flag is followed by a real commit."""

        def __getattr__(self, name):
            return getattr(real, name)

        def eval(self, script, numkeys, *args):
            answer = real.eval(script, numkeys, *args)
            if script == wake_groups.RELEASE and args[0] == flag and answer and not committed:
                committed.append(commands.top_up_balance(customer_id=customer.pk, amount_cents=100))
            return answer

    with monkeypatch.context() as patched:
        patched.setattr(redis_store, "client", CommitRightAfterTheClear)
        tasks.wake(lane)

    assert len(committed) == 1, "the task did not let go of the lane"
    assert real.exists(flag), "the commit did not take the lane over"
    token = decode_token(committed[0].token)
    assert not progress.state(VIEW).covers(token), "the closing task projected the rows too"
    tasks.wake(lane)  # the commit's own task, as the worker would run it
    assert progress.state(VIEW).covers(token)
    assert not real.exists(flag)
