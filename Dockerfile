# The shop's image: web (uvicorn, ASGI), Celery worker and beat all run from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=shop.settings \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus

WORKDIR /app
# The exact versions and hashes of requirements/runtime.lock (`make lock`), then the
# project itself with nothing resolved again: the same packages at every build.
COPY requirements/runtime.lock ./requirements/runtime.lock
RUN pip install --no-cache-dir --require-hashes -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY shop ./shop
COPY orders ./orders
COPY readmodels ./readmodels
COPY manage.py ./
# collectstatic: the admin's and Swagger UI's files, hashed and compressed, which
# WhiteNoise serves with DEBUG off.
RUN pip install --no-cache-dir --no-deps . \
    && DJANGO_SECRET_KEY=build-only-not-a-secret python manage.py collectstatic --noinput \
    && useradd --create-home --uid 10001 shop \
    && mkdir -p /tmp/prometheus && chown shop /tmp/prometheus

USER shop
EXPOSE 8000
# --no-proxy-headers: the app alone decides which X-Forwarded-* to trust (NUM_PROXIES for
# the client address the throttles count, SECURE_PROXY_SSL_HEADER for https).
CMD ["uvicorn", "shop.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--no-proxy-headers"]
