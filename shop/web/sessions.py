"""Browser sessions: Django's database sessions, each request's row read by one fixed query.

A signed-in browser (the storefront, the admin, the browsable API) pays on every
request for its session row and then its user row. Through the ORM most of that was
Python building the two queries, not PostgreSQL answering them (bench/session_cpu.py);
here both are fixed statements, built once per process, as API tokens are
(shop.web.api_tokens). What a session holds, when it expires and how it is saved,
renewed and deleted are Django's own: only the reads change.
"""

from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model
from django.contrib.sessions.backends import db
from django.db import connections, router
from django.utils import timezone

from shop.web.fixed_reads import row_by


class SessionStore(db.SessionStore):
    def _get_session_from_db(self):
        """The unexpired row of this key, as the ORM's get() would give it, or None."""
        key = self.session_key
        row = None
        if key is not None:
            alias = router.db_for_read(self.model)
            with connections[alias].cursor() as cursor:
                cursor.execute(_session_query(), [key, timezone.now()])
                row = cursor.fetchone()
        if row is None:
            self._session_key = None  # as Django does: a new session gets a new key
            return None
        return self.model(session_key=key, session_data=row[0])


def user_by_id(user_id):
    """The user with this primary key, as the ORM's get() would load it, or None."""
    user_model = get_user_model()
    return row_by(user_model, user_model._meta.pk.column, user_id)


@cache
def _session_query() -> str:
    from django.contrib.sessions.models import Session

    meta = Session._meta
    quote = connections[router.db_for_read(Session)].ops.quote_name
    return (
        f"SELECT {quote(meta.get_field('session_data').column)} FROM {quote(meta.db_table)} "
        f"WHERE {quote(meta.get_field('session_key').column)} = %s "
        f"AND {quote(meta.get_field('expire_date').column)} > %s"
    )
