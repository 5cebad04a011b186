"""A session request's own reads, the ORM's against the fixed statements (shop.web.sessions).

    .venv/bin/python -m shop.devstack exec -- .venv/bin/python bench/session_lookup.py

What a signed-in browser's request pays before any view: its session row, loaded and
decoded, then its user. Django's database engine and ModelBackend build an ORM query
for each; shop.web.sessions reads both by fixed statements. Both run in this one
process, interleaved in rounds, on a throwaway test database, so other load on the
machine weighs on each alike; CPU time (process_time) per read, client side (what a
web process spends; PostgreSQL's own work is the same for both).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings_test")

ROUNDS, READS = 5, 1000


def main() -> int:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.auth.backends import ModelBackend
    from django.contrib.sessions.backends import db
    from django.test.runner import DiscoverRunner

    from shop.web import sessions
    from shop.web.login_throttle import ThrottledModelBackend

    runner = DiscoverRunner(verbosity=0)
    databases = runner.setup_databases()
    try:
        user = get_user_model().objects.create_user("session-lookup", password="x")
        session = db.SessionStore()
        session.update({SESSION_KEY: str(user.pk), HASH_SESSION_KEY: user.get_session_auth_hash(),
                        BACKEND_SESSION_KEY: settings.AUTHENTICATION_BACKENDS[0]})
        session.save()
        key = session.session_key

        def through_the_orm():
            return ModelBackend().get_user(int(db.SessionStore(key).load()[SESSION_KEY]))

        def by_fixed_statements():
            return ThrottledModelBackend().get_user(
                int(sessions.SessionStore(key).load()[SESSION_KEY]))

        kinds = {"ORM (Django's engine and ModelBackend)": through_the_orm,
                 "fixed statements (shop.web.sessions)": by_fixed_statements}
        assert all(read() == user for read in kinds.values())
        spent = {name: [] for name in kinds}
        for _ in range(ROUNDS):
            for name, read in kinds.items():
                started = time.process_time()
                for _ in range(READS):
                    read()
                spent[name].append((time.process_time() - started) * 1000 / READS)
        for name, times in spent.items():
            times.sort()
            print(f"{name:42} {times[len(times) // 2]:.3f} ms CPU per session read "
                  f"(median of {ROUNDS} rounds of {READS}; best {times[0]:.3f})")
    finally:
        runner.teardown_databases(databases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
