"""Separate "hosts" for a test: network namespaces on a private bridge, cut off for real.

Each host is a network namespace with a veth pair whose other end is a port of a bridge
in the machine's own namespace; the bridge holds the servers' address. A process started
in a host reaches the servers only over its link, from an address of its own (so the
servers can tell the hosts apart: pg_stat_activity.client_addr, Redis CLIENT LIST).

Cutting a host sets the bridge side of its link down: from then on every packet either
way is dropped, and neither side is told anything (no FIN, no reset): what a machine
that lost its network, or its power, looks like to the servers. Healing sets it up again,
and whatever the host's kernel still retransmits gets through.
"""

from __future__ import annotations

import ipaddress
import os
import random
import subprocess
from dataclasses import dataclass


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    return subprocess.run(command, check=check, capture_output=True, text=True, timeout=30)


def namespaces_available() -> str | None:
    """Why hosts cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        _ip("netns", "list")
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"`ip netns` does not work here: {exc}"
    return None


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = _ip("-4", "-o", "addr", "show").stdout.split("\n")
    return [ipaddress.ip_interface(line.split()[3]).network for line in out if line.strip()]


@dataclass
class Host:
    name: str  # its network namespace
    address: str
    link: str  # the bridge side of its veth pair: what a cut sets down

    def command(self, argv: list[str]) -> list[str]:
        """`argv`, run inside this host."""
        return ["ip", "netns", "exec", self.name, *argv]


class Hosts:
    """A bridge holding the servers' address, and hosts attached to it."""

    def __init__(self, count: int):
        tag = f"{random.randrange(16**4):04x}"
        used = _used_networks()
        for _ in range(100):
            network = ipaddress.ip_network(f"10.{random.randrange(100, 250)}."
                                           f"{random.randrange(256)}.0/24")
            if not any(network.overlaps(other) for other in used):
                break
        else:
            raise AssertionError("no free private /24 for the test's hosts")
        self.network = network
        addresses = list(network.hosts())
        self.bridge = f"shbr{tag}"
        self.server_address = str(addresses[0])
        self.hosts = [
            Host(name=f"shop-{tag}-{n}", address=str(addresses[n + 1]), link=f"sh{tag}h{n}")
            for n in range(count)
        ]

    def __enter__(self) -> Hosts:
        try:
            self._make()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def _make(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.server_address}/{self.network.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for host in self.hosts:
            inside = f"{host.link}x"
            _ip("netns", "add", host.name)
            _ip("link", "add", host.link, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", host.name)
            _ip("link", "set", host.link, "master", self.bridge)
            _ip("link", "set", host.link, "up")
            _ip("link", "set", "lo", "up", netns=host.name)
            _ip("addr", "add", f"{host.address}/{self.network.prefixlen}", "dev", inside,
                netns=host.name)
            _ip("link", "set", inside, "up", netns=host.name)

    def cut(self, host: Host) -> None:
        _ip("link", "set", host.link, "down")

    def heal(self, host: Host) -> None:
        _ip("link", "set", host.link, "up")

    def remove(self) -> None:
        """Remove every namespace and link made here (whatever of them exists)."""
        for host in self.hosts:
            # Processes still inside keep a namespace alive only while they live; its
            # name and links go now.
            _ip("netns", "del", host.name, check=False)
            _ip("link", "del", host.link, check=False)
        _ip("link", "del", self.bridge, check=False)
