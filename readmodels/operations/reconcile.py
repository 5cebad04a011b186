"""Compare a read model with the write model, and repair exactly what differs.

Works in batches of keys on both sides, so it runs on a large database without
loading it into memory: every aggregate's expected document version against the
stored one (missing, behind, ahead), then every stored document against the write
model (stray documents that should not exist).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.utils import timezone

from readmodels import projectors
from readmodels.models import ReconcileRun

EXAMPLES = 5


@dataclass
class Report:
    read_model: str
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    behind: list[str] = field(default_factory=list)
    ahead: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)
    repaired: int = 0
    seconds: float = 0.0
    finished_at: str = ""

    @property
    def differences(self) -> int:
        return len(self.missing) + len(self.behind) + len(self.ahead) + len(self.stray)

    def summary(self) -> dict:
        return {
            "read_model": self.read_model,
            "checked": self.checked,
            "missing": len(self.missing),
            "behind": len(self.behind),
            "ahead": len(self.ahead),
            "stray": len(self.stray),
            "repaired": self.repaired,
            "seconds": round(self.seconds, 3),
            "finished_at": self.finished_at,
            "examples": {
                "missing": self.missing[:EXAMPLES],
                "behind": self.behind[:EXAMPLES],
                "ahead": self.ahead[:EXAMPLES],
                "stray": self.stray[:EXAMPLES],
            },
        }


def reconcile(name: str, *, repair: bool = False, batch_size: int = 1000) -> Report:
    projector = projectors.get(name)
    report = Report(name)
    started = time.monotonic()
    for keys in projector.all_keys(batch_size):
        expected = {doc.key: doc for doc in projector.documents_by_key(keys)}
        stored = projector.stored_versions(list(expected))
        report.checked += len(expected)
        fix = []
        for key, doc in expected.items():
            have = stored.get(key)
            if have is None:
                report.missing.append(key)
                fix.append(doc)
            elif have < doc.version:
                report.behind.append(key)
                fix.append(doc)
            elif have > doc.version:
                # Only a corrupted store can be ahead: the gate would refuse the repair,
                # so the document is deleted and written afresh.
                report.ahead.append(key)
                fix.append(doc)
        if repair and fix:
            ahead = [d.key for d in fix if d.key in set(report.ahead)]
            if ahead:
                projector.delete(ahead)
            projector.write(fix)
            report.repaired += len(fix)
    for keys in projector.stored_keys():
        exists = projector.key_exists(keys)
        stray = [k for k in keys if k not in exists]
        report.stray.extend(stray)
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
        missing=len(report.missing),
        behind=len(report.behind),
        ahead=len(report.ahead),
        stray=len(report.stray),
        repaired=report.repaired,
        seconds=report.seconds,
        examples=summary["examples"],
    )


def last_result(name: str) -> ReconcileRun | None:
    return ReconcileRun.objects.filter(projector=name).first()
