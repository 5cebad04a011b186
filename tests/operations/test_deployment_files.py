"""docker-compose.yml, the Dockerfile and the lock files describe the real stack.

No Docker engine runs here, so this is what can be checked: the YAML loads, every
service names an image or a build, the images match the pinned clients, every app
service gets the same environment, every service restarts, is bounded in memory and
has a health check, and the lock files hold every dependency pyproject.toml names. The
same for the Sentinel option (docker-compose.sentinel.yml, merged over the base file),
and both files validate against the Compose Specification's schema.
(The PostgreSQL init script runs for real in test_deployment_database.py.)
"""

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import ROOT

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

def test_every_service_restarts_is_bounded_in_memory_and_has_a_health_check():
    services = _compose()["services"]
    for name, service in services.items():
        assert re.fullmatch(r"\d+[mg]", str(service.get("mem_limit", ""))), name
        if name == "migrate":
            # One-shot: it must not loop on a broken migration, and nothing polls it.
            assert service["restart"] == "no"
            assert service["healthcheck"] == {"disable": True}
            continue
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name


def test_each_app_container_has_its_own_metrics_directory():
    """prometheus_client's files are named by PID, and PIDs repeat across containers:
    a directory shared between containers mixes their metrics up."""
    services = _compose()["services"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    metrics_dir = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", dockerfile).group(1)
    for name in APP_SERVICES:
        assert any(m.split(":")[0] == metrics_dir for m in services[name]["tmpfs"]), name
        assert not any(str(v).split(":")[-1] == metrics_dir
                       for v in services[name].get("volumes", [])), name
    assert "metrics" not in (_compose().get("volumes") or {})
    assert services["worker"]["environment"]["WORKER_METRICS_PORT"]
    assert "9100" not in str(services["worker"].get("ports", [])), "worker metrics are internal"


def test_the_app_connects_as_its_own_role_not_the_superuser():
    services = _compose()["services"]
    superuser = services["postgres"]["environment"]["POSTGRES_USER"]
    for name in APP_SERVICES:
        url = services[name]["environment"]["DATABASE_URL"]
        user = re.match(r"postgres://([^:@]+)", url).group(1)
        assert user == "shop" and user != superuser, name
    mounts = services["postgres"]["volumes"]
    assert "./deploy/postgres/10-app-role.sh:/docker-entrypoint-initdb.d/10-app-role.sh:ro" in mounts
    script = (ROOT / "deploy" / "postgres" / "10-app-role.sh").read_text()
    assert "NOSUPERUSER" in script and "CREATE DATABASE shop OWNER shop" in script


def test_production_https_settings_are_passed_through():
    environment = _compose()["services"]["web"]["environment"]
    for name in ("DJANGO_SECURE_SSL_REDIRECT", "DJANGO_SECURE_COOKIES", "DJANGO_HSTS_SECONDS",
                 "NUM_PROXIES", "API_TOKEN_TTL_SECONDS", "METRICS_TOKEN"):
        assert name in environment, name


def test_dockerfile_installs_the_lock_and_runs_the_asgi_app():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir --require-hashes -r requirements/runtime.lock" in dockerfile
    assert "pip install --no-cache-dir --no-deps ." in dockerfile
    assert "manage.py collectstatic --noinput" in dockerfile
    cmd = re.search(r"^CMD (.*)$", dockerfile, re.M).group(1)
    assert "shop.asgi:application" in cmd
    # The app, not uvicorn, decides which X-Forwarded-For to trust (NUM_PROXIES).
    assert "--no-proxy-headers" in cmd
    assert "USER " in dockerfile


def _locked(lock: str) -> dict[str, str]:
    text = (ROOT / "requirements" / lock).read_text()
    return {
        canonicalize_name(m.group(1)): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)", text, re.M)
    }


def test_every_dependency_is_in_the_lock_files():
    """A dependency added to pyproject.toml without `make lock` fails here, before the
    image or CI installs an environment without it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for lock, requirements in {
        "runtime.lock": project["dependencies"],
        "dev.lock": project["dependencies"] + extras["dev"],
        "bench.lock": project["dependencies"] + extras["dev"] + extras["bench"],
    }.items():
        locked = _locked(lock)
        for line in requirements:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in locked, f"{requirement.name} is not in requirements/{lock}: make lock"
            assert requirement.specifier.contains(locked[name], prereleases=True), (
                f"requirements/{lock} has {name}=={locked[name]}, pyproject.toml wants "
                f"{requirement.specifier}: make lock"
            )


def test_installs_come_from_the_locks():
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --require-hashes -r requirements/dev.lock" in makefile
    assert "pip install --quiet --no-deps -e ." in makefile
    for lock in ("runtime.lock", "dev.lock", "bench.lock"):
        assert f"-o requirements/{lock}" in makefile, lock
    assert "--generate-hashes" in makefile


def test_compose_runs_the_processes_make_run_and_the_benchmarks_run():
    """What is benchmarked is what ships: the same server, process counts and pool."""
    from shop.devstack import stack_commands

    shipped = stack_commands(port=8000, schedule=Path("/tmp/schedule"))
    services = _compose()["services"]

    def flag(command: list[str], name: str) -> str:
        for i, part in enumerate(command):
            if part == name:
                return command[i + 1]
            if part.startswith(name + "="):
                return part.split("=", 1)[1]
        raise AssertionError(f"{name} missing from {command}")

    web = services["web"]["command"]
    assert Path(shipped["web"][0]).name == web[0] == "uvicorn"
    assert flag(web, "--workers") == flag(shipped["web"], "--workers")
    assert "--no-proxy-headers" in web and "--no-proxy-headers" in shipped["web"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f'"--workers", "{flag(shipped["web"], "--workers")}"' in dockerfile
    worker = services["worker"]["command"]
    assert flag(worker, "--concurrency") == flag(shipped["worker"], "--concurrency")
    assert services["web"]["environment"]["DATABASE_POOL_MAX_SIZE"] == "10"


# --- the Sentinel option: docker-compose.sentinel.yml on top of docker-compose.yml -------

SENTINEL_SERVICES = ["redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"]


def _sentinel_override() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.sentinel.yml").read_text())


def _merged(base: dict, override: dict) -> dict:
    """Compose's merge of an override file, for what these tests look at: mappings merge
    key by key, anything else (a command, a list of volumes) is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def test_both_compose_files_follow_the_compose_specification():
    """No Docker engine here: the Compose Specification's JSON schema is what can check
    that `docker compose -f docker-compose.yml -f docker-compose.sentinel.yml` accepts
    the files (check-jsonschema ships the schema; it reaches no network)."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
         "vendor.compose-spec", "docker-compose.yml", "docker-compose.sentinel.yml"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_with_the_sentinel_option_every_app_service_asks_the_sentinels():
    services = _merged(_compose(), _sentinel_override())["services"]
    sentinel_config = _sentinel_override()["x-sentinel"]["command"][-1]
    master = re.search(r"sentinel monitor (\S+) redis 6379 (\d+)", sentinel_config)
    assert master, sentinel_config
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        # The base environment is still there (merged, not replaced).
        assert set(ENVIRONMENT) <= set(environment), name
        hosts = [a.split(":") for a in environment["REDIS_SENTINELS"].split(",")]
        assert sorted(h for h, _ in hosts) == ["sentinel-1", "sentinel-2", "sentinel-3"], name
        assert all(port == "26379" for _, port in hosts), name
        assert environment["REDIS_SENTINEL_MASTER"] == master.group(1), name
        for sentinel in ("sentinel-1", "sentinel-2", "sentinel-3"):
            assert services[name]["depends_on"][sentinel] == {"condition": "service_healthy"}
    # A quorum that a majority of the three reaches, and one sentinel per service name.
    assert int(master.group(2)) == 2
    for sentinel in ("sentinel-1", "sentinel-2", "sentinel-3"):
        assert services[sentinel]["hostname"] == sentinel
        assert f"{sentinel}-data:/data" in services[sentinel]["volumes"]
    replica = services["redis-replica"]["command"][-1]
    assert "replicaof redis 6379" in replica and "appendonly yes" in replica
    assert "appendonly yes" in services["redis"]["command"][-1]


def test_the_sentinel_services_restart_are_bounded_and_have_health_checks():
    services = _merged(_compose(), _sentinel_override())["services"]
    for name in SENTINEL_SERVICES:
        service = services[name]
        assert service["image"] == services["redis"]["image"], name
        assert service["restart"] == "unless-stopped", name
        assert re.fullmatch(r"\d+[mg]", str(service["mem_limit"])), name
        assert service["healthcheck"]["test"], name
    # redis-cli exits 0 on an error reply: the check must look at the answer.
    check = services["sentinel-1"]["healthcheck"]["test"]
    assert "ckquorum" in check[-1] and "grep -q '^OK'" in check[-1]
    volumes = _sentinel_override()["volumes"]
    assert set(volumes) == {"redis-replica-data", "sentinel-1-data", "sentinel-2-data",
                            "sentinel-3-data"}
