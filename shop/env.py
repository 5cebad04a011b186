"""The one place that reads the process environment for settings."""

import os
from urllib.parse import unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/shop",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "ELASTICSEARCH_URL": "http://127.0.0.1:9200",
    "ALLOWED_HOSTS": "127.0.0.1,localhost,[::1]",
}


def get(name: str, default: str | None = None) -> str | None:
    if default is None:
        default = DEFAULTS.get(name)
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def get_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def get_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def get_list(name: str) -> list[str]:
    return [item.strip() for item in (get(name) or "").split(",") if item.strip()]


def get_addresses(name: str, default_port: int) -> list[tuple[str, int]]:
    """A comma-separated list of host:port (the port may be left out)."""
    addresses = []
    for item in get_list(name):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", str(default_port))
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(f"{name} must be host:port,host:port,... not {item!r}")
        addresses.append((host, int(port)))
    return addresses


def database_from_url(url: str) -> dict:
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgres:// URL, not {url!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "shop",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
    }
