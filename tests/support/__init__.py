"""What the tests share: real servers and processes, waits with deadlines, read-side helpers.

- waiting: wait_until, the one wait on a condition with a deadline.
- ports: free ports, and whether one answers.
- readside: clean views, run projectors, compare a view with PostgreSQL.
- concurrency: race real transactions from threads.
- servers: a real uvicorn on the test database.
- processes: throwaway redis-server and ES dev server, Celery worker processes.
- fault_stack: a whole throwaway shop (its own PostgreSQL, Redis, ES, web, workers, beat).
- browser: headless Chromium.

Fixtures live in tests/conftest.py.
"""

from pathlib import Path

# The repository's root: where the servers and workers the tests start run from.
ROOT = Path(__file__).resolve().parents[2]
