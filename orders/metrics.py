"""Prometheus metrics of the write side: commands by outcome, strong reads."""

from prometheus_client import Counter

COMMANDS = Counter(
    "shop_commands_total",
    "Commands handled by the API, by command and outcome (ok, refused, error).",
    ["command", "outcome"],
)
READS = Counter(
    "shop_reads_total",
    "Reads served, by read model (or write_model) and consistency "
    "(strong, eventual, strong-fallback, stale, unavailable).",
    ["read_model", "consistency"],
)
