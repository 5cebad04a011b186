"""The read side's settings (settings.READMODELS) with their meaning in one place."""

from __future__ import annotations

from django.conf import settings


def _conf() -> dict:
    return settings.READMODELS


def namespace() -> str:
    return _conf()["NAMESPACE"]


def segments(projector: str) -> int:
    return max(1, int(_conf()["SEGMENTS"].get(projector, 1)))


def slo_seconds(read_model: str) -> float:
    return float(_conf()["SLO_SECONDS"].get(read_model, 2.0))


def batch_size() -> int:
    return int(_conf()["BATCH_SIZE"])


def max_wait_ms_default() -> int:
    return int(_conf()["MAX_WAIT_MS_DEFAULT"])


def max_wait_ms_cap() -> int:
    return int(_conf()["MAX_WAIT_MS_CAP"])


def poison_max_attempts() -> int:
    return int(_conf()["POISON_MAX_ATTEMPTS"])


def sweep_interval() -> float:
    return float(_conf()["SWEEP_INTERVAL_SECONDS"])


def run_time_budget() -> float:
    return float(_conf()["RUN_TIME_BUDGET_SECONDS"])


def micro_batch_linger() -> float:
    """Seconds a busy projector waits between passes, so that its batches grow with load."""
    return float(_conf().get("MICRO_BATCH_LINGER_MS", 5)) / 1000


def store_timeout() -> float:
    return float(_conf()["STORE_TIMEOUT_SECONDS"])


def read_timeout() -> float:
    return float(_conf().get("READ_TIMEOUT_SECONDS", 1.0))


def max_waiting_readers() -> int:
    return int(_conf().get("MAX_WAITING_READERS", 1000))


def rebuild_grace_seconds() -> float:
    return float(_conf().get("REBUILD_GRACE_SECONDS", 600))


def outbox_retention_days() -> float:
    return float(_conf().get("OUTBOX_RETENTION_DAYS", 7))


def session_token_ttl_seconds() -> int:
    return int(_conf().get("SESSION_TOKEN_TTL_SECONDS", 3600))


def horizon_hold_alert_seconds() -> float:
    return float(_conf().get("HORIZON_HOLD_ALERT_SECONDS", 5))


def lag_sample_seconds() -> float:
    """How often beat's process samples every segment's lag for the admin's chart."""
    return float(_conf().get("LAG_SAMPLE_SECONDS", 10.0))
