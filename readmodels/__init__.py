"""The read side: the projected views in Elasticsearch and Redis, and everything that keeps
them up to date and serves them.

projectors (what each view is made of), stores (the stores, one interface), pipeline
(outbox rows into the views, and where each stands), operations (what operators run),
api (the projected reads and their consistency contract), tasks (Celery entry points).

It reads the write side through orders.models, orders.outbox and orders.signals only
(an import-linter contract in pyproject.toml), and stands on shop.web for HTTP.
"""
