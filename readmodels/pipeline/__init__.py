"""The projection pipeline: outbox rows into read models (runner), and where each stands (progress).

Depends on the projectors and stores only; the operations and the Celery tasks build on it.
"""
