"""Prometheus metrics of the write side: commands by outcome."""

from prometheus_client import Counter

COMMANDS = Counter(
    "shop_commands_total",
    "Commands handled by the API, by command and outcome (ok, refused, error).",
    ["command", "outcome"],
)
