"""docker-compose.yml and the Dockerfile parse and describe the real stack.

No Docker engine runs here, so this is what can be checked: the YAML loads, every
service names an image or a build, the images match the pinned clients, and every
app service gets the same environment.
"""

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ["migrate", "web", "worker", "beat"]
ENVIRONMENT = [
    "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "ELASTICSEARCH_URL",
    "DJANGO_SECRET_KEY", "DJANGO_DEBUG", "ALLOWED_HOSTS",
]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_names_an_image_or_a_build():
    services = _compose()["services"]
    assert {"postgres", "redis", "elasticsearch", "web", "worker", "beat"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name


def test_images_match_what_the_project_pins():
    services = _compose()["services"]
    assert services["postgres"]["image"] == "postgres:17"
    es_major = int(re.search(r":(\d+)\.", services["elasticsearch"]["image"]).group(1))
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    client = next(d for d in deps if d.startswith("elasticsearch"))
    assert int(re.search(r">=(\d+)", client).group(1)) == es_major
    assert services["elasticsearch"]["environment"]["discovery.type"] == "single-node"
    assert services["elasticsearch"]["environment"]["xpack.security.enabled"] == "false"


def _minor(text: str) -> tuple[int, int]:
    major, minor = re.search(r"(\d+)(?:\.(\d+))?", text).groups()
    return int(major), int(minor or 0)


def test_the_elasticsearch_client_is_not_newer_than_the_server_image():
    image = _compose()["services"]["elasticsearch"]["image"]
    server = _minor(image.rsplit(":", 1)[1])
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d for d in deps if re.match(r"elasticsearch\b", d))
    assert _minor(re.search(r">=([\d.]+)", pin).group(1)) == server, pin
    upper = _minor(re.search(r"<([\d.]+)", pin).group(1))
    assert upper == (server[0], server[1] + 1), f"{pin} allows a client newer than {image}"
    assert _minor(version("elasticsearch")) == server, "reinstall: pip install -e '.[dev]'"


def test_elasticsearch_never_creates_an_index_on_a_write():
    environment = _compose()["services"]["elasticsearch"]["environment"]
    assert environment["action.auto_create_index"] == "false"


def test_app_services_share_the_environment_and_health_checks_exist():
    services = _compose()["services"]
    for name in APP_SERVICES:
        assert set(ENVIRONMENT) <= set(services[name]["environment"]), name
        assert services[name]["environment"]["DJANGO_DEBUG"] == "false"
    for name in ["postgres", "redis", "elasticsearch", "web", "worker"]:
        assert "healthcheck" in services[name], name
    for name in ["web", "worker", "beat"]:
        assert "metrics:/tmp/prometheus" in services[name]["volumes"], name


def test_dockerfile_installs_the_project_and_runs_the_asgi_app():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile
    assert re.search(r"^CMD .*shop\.asgi:application", dockerfile, re.M)
    assert "USER " in dockerfile
