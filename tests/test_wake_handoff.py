"""A wake-up that finds its segment busy hands the work to the lock holder, not to a
storm of retry tasks: it leaves a rerun request, and the holder runs again for it."""

import psycopg
import pytest
from django.db import connection

from orders import commands
from orders.outbox import decode_token
from readmodels import tasks
from readmodels.pipeline import progress, runner
from readmodels.stores import redis_store
from tests.readside import project_all

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
    flag = tasks.rerun_flag(VIEW, 0, 1)
    with _other_session() as holder:
        # Another worker holds the segment (a real advisory lock in another session).
        holder.execute("SELECT pg_advisory_lock(%s, %s)", list(runner.lock_key(VIEW, 0, 1)))
        outcome = tasks.project(VIEW)
        assert outcome == {"rows": 0, "complete": False}
        assert redis_store.client().exists(flag), "the holder was not asked to run again"
        assert not progress.state(VIEW).covers(decode_token(later.token))
        holder.execute("SELECT pg_advisory_unlock(%s, %s)", list(runner.lock_key(VIEW, 0, 1)))
    # The next run through the lock projects the row and consumes the request.
    outcome = tasks.project(VIEW)
    assert outcome["rows"] == 1 and outcome["complete"]
    assert progress.state(VIEW).covers(decode_token(later.token))
    assert not redis_store.client().exists(flag)


def test_a_free_segment_projects_without_leaving_a_request(read_models, make_customer):
    customer = make_customer()
    project_all()
    later = commands.top_up_balance(customer_id=customer.pk, amount_cents=100)
    outcome = tasks.project(VIEW)
    assert outcome["rows"] == 1
    assert progress.state(VIEW).covers(decode_token(later.token))
    assert not redis_store.client().exists(tasks.rerun_flag(VIEW, 0, 1))
