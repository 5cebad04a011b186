"""A Redis Sentinel topology of a test's own: a primary, a replica, three sentinels.

Every server is a real redis-server on a free port with its data in a temporary
directory (the sentinels are `redis-server <conf> --sentinel`). The replica reaches the
primary through a Gate (tests/support/fault_stack.py), so a test can cut replication
for real and let the primary take writes the replica never receives: what asynchronous
replication loses when the primary dies at such a moment. The sentinels watch the
servers directly, and run the configuration docker-compose.sentinel.yml writes (with
this machine's addresses for the services' names): what a failover costs here is what
it costs with the shipped settings.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import redis
import yaml

from tests.support import ROOT
from tests.support.fault_stack import Gate
from tests.support.ports import free_port, port_answers
from tests.support.processes import ThrowawayRedis, _stop_group
from tests.support.waiting import wait_until

MASTER = "shop"
QUORUM = 2
COMPOSE_FILE = ROOT / "docker-compose.sentinel.yml"


def compose_sentinel_config() -> str:
    """The sentinel.conf that docker-compose.sentinel.yml writes (hostname left as %s)."""
    service = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["sentinel-1"]
    written = re.search(r"printf '([^']*)'", service["command"][-1]).group(1)
    return written.replace("\\n", "\n")


def down_after_ms() -> int:
    """How long the shipped sentinels wait before they take a silent primary for down."""
    return int(re.search(rf"down-after-milliseconds {MASTER} (\d+)",
                         compose_sentinel_config()).group(1))


class ThrowawaySentinel:
    """`redis-server sentinel.conf --sentinel` on a free port (it rewrites its own config)."""

    def __init__(self, directory: Path, primary_port: int):
        self.port = free_port()
        self.dir = directory
        self.dir.mkdir(parents=True)
        self.config = self.dir / "sentinel.conf"
        # The shipped configuration, with this machine's addresses for the services' names.
        shipped = compose_sentinel_config() % "127.0.0.1"
        config = shipped.replace("port 26379\n", f"port {self.port}\n").replace(
            f"sentinel monitor {MASTER} redis 6379 {QUORUM}\n",
            f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} {QUORUM}\n")
        assert f"port {self.port}\n" in config, shipped
        assert f"monitor {MASTER} 127.0.0.1 {primary_port} " in config, shipped
        # Loopback only: the test's servers are reached from this machine alone.
        self.config.write_text(f"bind 127.0.0.1\ndir {self.dir}\n{config}")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.dir / "sentinel.log", "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", str(self.config), "--sentinel"], cwd=self.dir,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_until(lambda: port_answers(self.port), 20, message="a sentinel did not start",
                   process=self.process)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)

    def master(self) -> dict:
        """What this sentinel knows of the primary (SENTINEL MASTER), numbers as ints."""
        flat = self.client().execute_command("SENTINEL", "MASTER", MASTER)
        state = dict(zip(flat[::2], flat[1::2], strict=True))
        return {k: int(v) if v.lstrip("-").isdigit() else v for k, v in state.items()}

    def primary_port(self) -> int | None:
        found = self.client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        return int(found[1]) if found else None

    def log(self) -> str:
        return (self.dir / "sentinel.log").read_text(errors="replace")


class Topology:
    def __init__(self, root: Path):
        self.root = root
        (root / "primary").mkdir()
        (root / "replica").mkdir()
        self.primary = ThrowawayRedis(root / "primary")
        self.replication = Gate(self.primary.port)
        self.replica = ThrowawayRedis(
            root / "replica", "--replicaof", "127.0.0.1", str(self.replication.port),
            # The replica announces its own port: the sentinels reach it directly.
        )
        self.sentinels = [
            ThrowawaySentinel(root / f"sentinel{n}", self.primary.port) for n in range(3)
        ]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", s.port) for s in self.sentinels]

    def env(self) -> dict[str, str]:
        """The settings that point a process of the shop at these sentinels."""
        return {
            "REDIS_SENTINELS": ",".join(f"{h}:{p}" for h, p in self.addresses),
            "REDIS_SENTINEL_MASTER": MASTER,
        }

    def start(self) -> Topology:
        self.primary.start()
        self.replication.open()
        self.replica.start()
        for sentinel in self.sentinels:
            sentinel.start()
        try:
            wait_until(self.ready, 60)
        except AssertionError:
            raise AssertionError(f"the Sentinel topology did not settle: {self.state()}\n"
                                 f"{self.logs()}") from None
        return self

    def ready(self) -> bool:
        """Replication is up and every sentinel knows the primary, the replica and the others."""
        if self.replica.client().info("replication").get("master_link_status") != "up":
            return False
        for sentinel in self.sentinels:
            master = sentinel.master()
            if (master["port"] != self.primary.port or master["num-slaves"] < 1
                    or master["num-other-sentinels"] < len(self.sentinels) - 1):
                return False
        return True

    def state(self) -> list[dict]:
        out = []
        for sentinel in self.sentinels:
            try:
                out.append(sentinel.master())
            except redis.RedisError as exc:
                out.append({"error": repr(exc)})
        return out

    def primary_port_by_sentinels(self) -> int | None:
        """The primary's port as a majority of the sentinels name it (None: no majority)."""
        ports = []
        for sentinel in self.sentinels:
            try:
                port = sentinel.primary_port()
            except redis.RedisError:
                continue
            if port:
                ports.append(port)
        for port in set(ports):
            if ports.count(port) >= QUORUM:
                return port
        return None

    def cut_replication(self) -> None:
        """The link from the replica to the primary fails (reset); it cannot come back."""
        self.replication.close()

    @staticmethod
    def role(server: ThrowawayRedis) -> str | None:
        """"master" or "slave" (None while the server drops connections, as on a demotion)."""
        try:
            return server.client().info("replication")["role"]
        except redis.ConnectionError:
            return None

    def kill_primary(self) -> float:
        """SIGKILL the primary; return the monotonic time it was killed."""
        self.primary.kill()
        return time.monotonic()

    def wait_for_promotion(self, timeout: float) -> float:
        """Wait until the sentinels name the replica the primary, and it takes writes;
        return the monotonic time."""

        def promoted():
            if self.primary_port_by_sentinels() != self.replica.port:
                return False
            return self.role(self.replica) == "master"

        try:
            wait_until(promoted, timeout, interval=0.05)
        except AssertionError:
            raise AssertionError(f"Sentinel did not promote the replica within {timeout} s: "
                                 f"{self.state()}\n{self.logs()}") from None
        return time.monotonic()

    def logs(self) -> str:
        return "\n".join(f"--- sentinel {n}\n{s.log()[-2000:]}" for n, s in enumerate(self.sentinels))

    def stop(self) -> None:
        for sentinel in self.sentinels:
            _stop_group(sentinel.process, signal.SIGKILL, 10)
        self.replication.close()
        for server in (self.replica, self.primary):
            _stop_group(server.process, signal.SIGKILL, 10)


@contextmanager
def sentinel_topology():
    """A primary, its replica and three sentinels of this test's own; all killed after."""
    root = Path(tempfile.mkdtemp(prefix="sentinel-topology-"))
    topology = Topology(root)
    try:
        yield topology.start()
    finally:
        topology.stop()
        shutil.rmtree(root, ignore_errors=True)
