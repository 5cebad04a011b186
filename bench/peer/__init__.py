"""The peer the benchmarks compare against: orders indexed into Elasticsearch the way
most Django projects do it, with django-elasticsearch-dsl and its Celery signal
processor. Bench-only (the `bench` extra in pyproject.toml); the shop never imports it."""
