# The shop's image: web (uvicorn, ASGI), Celery worker and beat all run from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=shop.settings \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus

WORKDIR /app
COPY pyproject.toml README.md ./
COPY shop ./shop
COPY orders ./orders
COPY readmodels ./readmodels
COPY manage.py ./
RUN pip install --no-cache-dir . \
    && DJANGO_SECRET_KEY=build-only-not-a-secret python manage.py collectstatic --noinput \
    && useradd --create-home --uid 10001 shop \
    && mkdir -p /tmp/prometheus && chown shop /tmp/prometheus

USER shop
EXPOSE 8000
CMD ["uvicorn", "shop.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "4"]
