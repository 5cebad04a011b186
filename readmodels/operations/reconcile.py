"""Compare a read model with the write model, and repair exactly what differs.

Works in batches of keys on both sides, so it runs on a large database without
loading it into memory: every aggregate's expected document version against the
stored one (missing, behind, ahead), then every stored document against the write
model (stray documents that should not exist). The report keeps counts and a few
example keys, never every differing key.

A batch's expected documents are loaded before its stored versions are read, so a
command committed and projected in between makes a healthy document look ahead (or
a fixed one look behind). Every difference is therefore checked again against the
write model as it is *after* the store was read, and a repair only ever writes that
fresh state, version-gated: it never deletes a document to put a lower version in
its place. A document still ahead of PostgreSQL after that check is a corrupted
store; reconcile reports it and leaves it to a rebuild.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils import timezone

from readmodels import projectors
from readmodels.models import ReconcileRun

EXAMPLES = 5
KINDS = ("missing", "behind", "ahead", "stray")


@dataclass
class Report:
    read_model: str
    checked: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    examples: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    repaired: int = 0
    seconds: float = 0.0
    finished_at: str = ""

    def add(self, kind: str, keys: list[str]) -> None:
        self.counts[kind] += len(keys)
        room = EXAMPLES - len(self.examples[kind])
        if room > 0:
            self.examples[kind].extend(keys[:room])

    @property
    def differences(self) -> int:
        return sum(self.counts.values())

    @property
    def needs_rebuild(self) -> bool:
        """Documents newer than the write model: only a rebuild can set that right."""
        return self.counts["ahead"] > 0

    @property
    def advice(self) -> str:
        if not self.needs_rebuild:
            return ""
        return (
            f"{self.counts['ahead']} document(s) of {self.read_model} are newer than "
            "PostgreSQL: the store is corrupted (restored from another time, or written "
            "by something other than the projectors). Reconcile does not move documents "
            f"backwards; run `manage.py projections rebuild {self.read_model}`."
        )

    def summary(self) -> dict:
        return {
            "read_model": self.read_model,
            "checked": self.checked,
            **self.counts,
            "repaired": self.repaired,
            "seconds": round(self.seconds, 3),
            "finished_at": self.finished_at,
            "examples": {kind: list(keys) for kind, keys in self.examples.items()},
            "advice": self.advice,
        }


def _check_batch(projector, keys: list[str], report: Report, repair: bool) -> None:
    expected = {doc.key: doc.version for doc in projector.documents_by_key(keys)}
    stored = projector.stored_versions(list(expected))
    report.checked += len(expected)
    differing = [key for key, version in expected.items() if stored.get(key) != version]
    if not differing:
        return
    # The write model as it is now, after the store was read: anything committed
    # before the read is in it, so a stored version above it cannot be a live write.
    fresh = {doc.key: doc for doc in projector.documents_by_key(differing)}
    missing, behind, ahead, fix = [], [], [], []
    for key in differing:
        doc = fresh.get(key)
        have = stored.get(key)
        if doc is None or have == doc.version:
            continue  # changed meanwhile, and the view already shows it
        if have is None:
            missing.append(key)
            fix.append(doc)
        elif have < doc.version:
            behind.append(key)
            fix.append(doc)
        else:
            ahead.append(key)
    report.add("missing", missing)
    report.add("behind", behind)
    report.add("ahead", ahead)
    if repair and fix:
        # Version-gated like every projector write: if a live projector has written a
        # newer version since, the store keeps it.
        refused = projector.write(fix)
        report.repaired += len(fix) - len(refused)


def reconcile(
    name: str,
    *,
    repair: bool = False,
    batch_size: int = 1000,
    on_progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Compare a read model with the write model; `on_progress(checked, total)` per batch."""
    projector = projectors.get(name)
    report = Report(name)
    started = time.monotonic()
    # Counting costs one pass over the keys (ids only): paid only when progress is shown.
    total = sum(len(keys) for keys in projector.all_keys(5000)) if on_progress else 0
    for keys in projector.all_keys(batch_size):
        _check_batch(projector, keys, report, repair)
        if on_progress:
            on_progress(report.checked, max(total, report.checked))
    for keys in projector.stored_keys():
        exists = projector.key_exists(keys)
        stray = [k for k in keys if k not in exists]
        report.add("stray", stray)
        if repair and stray:
            projector.delete(stray)
            report.repaired += len(stray)
    report.seconds = time.monotonic() - started
    report.finished_at = timezone.now().isoformat()
    _remember(report, repair)
    return report


def _remember(report: Report, repair: bool) -> None:
    """Keep the result where admin and metrics can show it."""
    summary = report.summary()
    ReconcileRun.objects.create(
        projector=report.read_model,
        repair=repair,
        checked=report.checked,
        missing=report.counts["missing"],
        behind=report.counts["behind"],
        ahead=report.counts["ahead"],
        stray=report.counts["stray"],
        repaired=report.repaired,
        seconds=report.seconds,
        examples=summary["examples"],
    )


def last_result(name: str) -> ReconcileRun | None:
    return ReconcileRun.objects.filter(projector=name).first()
