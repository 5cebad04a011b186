"""Operate the projections: status, rebuild, reconcile, dead letters.

    manage.py projections status [--json]           exit 1 when an SLO is breached, or a
                                                    transaction holds the outbox horizon
    manage.py projections ACTION --help            what each option does
    manage.py projections rebuild NAME|--all
    manage.py projections reconcile NAME|--all [--repair]
    manage.py projections deadletters [--retry|--discard] [--projector NAME] [--id N ...]
    manage.py projections restore                   after restoring PostgreSQL from a dump
"""

from __future__ import annotations

import json
import logging
import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from readmodels import humanize, projectors
from readmodels.models import DeadLetter, DeadLetterStatus
from readmodels.operations import deadletters, rebuild, reconcile, restore, status
from readmodels.stores import StoreUnavailable

logger = logging.getLogger("readmodels.slo")


class ProgressReport:
    """Progress of a long operation: a bar on a terminal, plain lines anywhere else.

    A carriage-return bar in `docker logs` or a log file is one endless line, so off a
    terminal each tenth of the work (and the end) gets a line of its own instead.
    """

    def __init__(self, stdout, label: str):
        self.stdout = stdout
        self.label = label
        self.tty = stdout.isatty()
        self.tenths_shown = -1

    def show(self, done: int, total: int, unit: str, rate: float | None = None) -> None:
        total = max(total, 0)
        done = min(done, total) if total else done
        speed = f"  {rate:,.0f} {unit}/s" if rate is not None else ""
        if rate and done < total:
            speed += f", about {humanize.duration((total - done) / rate)} left"
        if self.tty:
            bar = "#" * int(30 * done / max(total, 1))
            self.stdout.write(f"\r  [{bar:<30}] {done}/{total} {unit}{speed}", ending="")
            self.stdout.flush()
            return
        tenths = 10 * done // total if total else 10
        if tenths > self.tenths_shown:
            self.tenths_shown = tenths
            self.stdout.write(
                f"{self.label}: {done}/{total} {unit} ({10 * tenths}%){speed}"
            )

    def finish(self) -> None:
        if self.tty:
            self.stdout.write("")


def _names(options) -> list[str]:
    if options.get("all"):
        return list(projectors.PROJECTORS)
    name = options.get("name")
    if not name:
        raise CommandError("name a read model, or pass --all")
    if name not in projectors.PROJECTORS:
        raise CommandError(f"unknown read model {name!r}; known: {', '.join(projectors.PROJECTORS)}")
    return [name]


class Command(BaseCommand):
    help = "Operate the projections: status, rebuild, reconcile, deadletters, restore."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        names = f"a read model: {', '.join(projectors.PROJECTORS)}"
        st = sub.add_parser(
            "status", help="where each projector segment stands, against its lag SLO "
            "(exit code 1 when one is past it)",
        )
        st.add_argument("--json", action="store_true",
                        help="print a JSON list instead of the table (for scripts)")
        rb = sub.add_parser(
            "rebuild", help="rebuild a read model into a new generation while the current "
            "one serves; switch when caught up (resumes where an interrupted run stopped)",
        )
        rb.add_argument("name", nargs="?", help=names)
        rb.add_argument("--all", action="store_true", help="rebuild every read model, in turn")
        rb.add_argument("--batch-size", type=int, default=1000,
                        help="rows copied per batch (default 1000)")
        rb.add_argument("--grace-seconds", type=float, default=None,
                        help="how long the old generation is kept after the switch before "
                        "it is dropped (default READMODELS['REBUILD_GRACE_SECONDS'], 600)")
        rc = sub.add_parser(
            "reconcile", help="compare a read model with the write model: documents "
            "missing, behind, ahead, stray (exit code 1 when differences remain)",
        )
        rc.add_argument("name", nargs="?", help=names)
        rc.add_argument("--all", action="store_true", help="reconcile every read model, in turn")
        rc.add_argument("--repair", action="store_true",
                        help="write the missing and behind documents and delete strays "
                        "(never touches a document ahead of PostgreSQL)")
        rc.add_argument("--batch-size", type=int, default=1000,
                        help="rows compared per batch (default 1000)")
        rs = sub.add_parser(
            "restore",
            help="after restoring PostgreSQL into a new cluster: drop the old cluster's "
            "outbox rows, rebuild every read model, reset checkpoints and progress",
        )
        rs.add_argument("--batch-size", type=int, default=1000,
                        help="rows copied per batch of each rebuild (default 1000)")
        rs.add_argument("--grace-seconds", type=float, default=None,
                        help="how long each old generation is kept after its switch "
                        "(default READMODELS['REBUILD_GRACE_SECONDS'], 600)")
        dl = sub.add_parser("deadletters", help="list, retry or discard dead letters")
        group = dl.add_mutually_exclusive_group()
        group.add_argument("--retry", action="store_true",
                           help="re-project the aggregates of the dead letters listed")
        group.add_argument("--discard", action="store_true",
                           help="drop the dead letters listed (their rows stay unprojected)")
        dl.add_argument("--projector", metavar="NAME", help="only this read model's")
        dl.add_argument("--id", type=int, nargs="*", dest="ids", metavar="ID",
                        help="only the dead letters with these ids")

    def handle(self, *args, action, **options):
        return getattr(self, f"do_{action}")(options)

    def do_status(self, options):
        rows = status.segment_statuses()
        holder = status.horizon_hold()
        breached = [r for r in rows if r.breached]
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    [
                        {
                            "read_model": r.projector,
                            "segment": r.segment,
                            "segments": r.segments,
                            "position": [r.xid, r.position],
                            "rows_behind": r.rows_behind,
                            "lag_seconds": round(r.lag_seconds, 3),
                            "slo_seconds": r.slo_seconds,
                            "state": r.state,
                            "last_success_at": r.last_success_at.isoformat()
                            if r.last_success_at else None,
                            "last_error": r.last_error,
                            "dead_letters": r.dead_letters,
                            # The same for every row: the transaction holding every view.
                            "horizon_holder": None if holder is None else {
                                "xid": holder.xid, "pid": holder.pid, "database": holder.database,
                                "application_name": holder.application_name,
                                "state": holder.state, "age_seconds": round(holder.age_seconds, 1),
                            },
                        }
                        for r in rows
                    ],
                    indent=2,
                )
            )
        else:
            self._status_table(rows)
        # The warnings go to the log (stderr) once the table is out, never in between.
        self.stdout.flush()
        for r in breached:
            logger.warning(
                "lag SLO breached: %s[%s] is %.1f s behind (SLO %.1f s, %s rows)",
                r.projector, r.segment, r.lag_seconds, r.slo_seconds, r.rows_behind,
            )
        if holder is not None:
            self.stderr.write(status.horizon_advice(holder))
        if breached or holder is not None:
            sys.exit(1)

    def _status_table(self, rows) -> None:
        now = timezone.now()
        header = (
            f"{'read model':<20} {'segment':>7}  {'progress':<16} {'lag':>9} {'SLO':>6}  "
            f"{'state':<8} {'dead':>4}  {'last success':<13} last error"
        )
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for r in rows:
            progress = f"{r.rows_behind:,} rows behind" if r.rows_behind else "caught up"
            if r.rows_behind == 1:
                progress = "1 row behind"
            success = (
                f"{humanize.duration((now - r.last_success_at).total_seconds())} ago"
                if r.last_success_at else "never"
            )
            self.stdout.write(
                f"{r.projector:<20} {f'{r.segment}/{r.segments}':>7}  {progress:<16} "
                f"{humanize.duration(r.lag_seconds):>9} {humanize.duration(r.slo_seconds):>6}  "
                f"{r.state:<8} {r.dead_letters:>4}  {success:<13} {r.last_error[:60]}"
            )
        breached = [r for r in rows if r.breached]
        if breached:
            self.stdout.write(
                f"\n{len(breached)} segment{'s' if len(breached) != 1 else ''} past the lag "
                "SLO; see README, Operations runbook, Lag alarm."
            )

    def do_rebuild(self, options):
        for name in _names(options):
            self.stdout.write(f"rebuilding {name}")
            report = ProgressReport(self.stdout, f"rebuild {name}")

            def show(run, rate, report=report):
                report.show(run.copied, run.total, "documents", rate)

            try:
                run = rebuild.rebuild(
                    name,
                    batch_size=options["batch_size"],
                    on_progress=show,
                    grace_seconds=options["grace_seconds"],
                )
            except StoreUnavailable as exc:
                raise CommandError(f"store unavailable: {exc}; run again to resume") from exc
            except rebuild.LiveProjectorBusy as exc:
                raise CommandError(
                    f"{exc}; the old generation keeps serving and the rebuild resumes by "
                    "itself (a Celery worker runs it), or run again"
                ) from exc
            except (rebuild.RebuildRunning, rebuild.CheckpointsAhead) as exc:
                raise CommandError(str(exc)) from exc
            report.finish()
            seconds = (run.finished_at - run.started_at).total_seconds()
            self.stdout.write(
                f"  done: generation {run.generation}, {run.copied} documents in "
                f"{seconds:.1f} s ({run.copied / max(seconds, 1e-6):,.0f} docs/s)"
            )

    def do_reconcile(self, options):
        dirty = False
        for name in _names(options):
            progress = ProgressReport(self.stdout, f"reconcile {name}")
            try:
                report = reconcile.reconcile(
                    name, repair=options["repair"], batch_size=options["batch_size"],
                    on_progress=lambda done, total, p=progress: p.show(done, total, "documents"),
                )
            except StoreUnavailable as exc:
                raise CommandError(f"store unavailable: {exc}") from exc
            progress.finish()
            s = report.summary()
            self.stdout.write(
                f"{name}: checked {s['checked']}, missing {s['missing']}, behind {s['behind']}, "
                f"ahead {s['ahead']}, stray {s['stray']}, repaired {s['repaired']} "
                f"({s['seconds']} s)"
            )
            for kind, keys in s["examples"].items():
                if keys:
                    self.stdout.write(f"  {kind}: {', '.join(keys)}")
            if report.needs_rebuild:
                self.stderr.write(report.advice)
            # A repair fixes missing, behind and stray documents, never ahead ones.
            dirty = dirty or report.needs_rebuild or (
                report.differences and not options["repair"]
            )
        if dirty:
            sys.exit(1)

    def do_restore(self, options):
        def show(name):
            self.stdout.write(f"rebuilding {name}")

        try:
            result = restore.after_restore(
                batch_size=options["batch_size"],
                grace_seconds=options["grace_seconds"],
                on_read_model=show,
            )
        except (StoreUnavailable, rebuild.LiveProjectorBusy, rebuild.RebuildRunning) as exc:
            raise CommandError(f"{exc}; run `projections restore` again to finish") from exc
        self.stdout.write(
            f"deleted {result.outbox_rows_deleted} outbox rows of the old cluster, set aside "
            f"{result.rebuilds_set_aside} unfinished rebuilds, forgot "
            f"{result.session_tokens_forgotten} remembered session tokens, rebuilt "
            + ", ".join(f"{r.projector} (generation {r.generation})" for r in result.rebuilt)
            + "; checkpoints and progress start afresh"
        )

    def do_deadletters(self, options):
        letters = DeadLetter.objects.filter(status=DeadLetterStatus.DEAD)
        if options["projector"]:
            letters = letters.filter(projector=options["projector"])
        if options["ids"]:
            letters = letters.filter(pk__in=options["ids"])
        letters = list(letters.order_by("projector", "outbox_position"))
        for letter in letters:
            outcome = ""
            if options["retry"]:
                outcome = "retried: ok" if deadletters.retry(letter) else "retried: failed again"
            elif options["discard"]:
                deadletters.discard(letter)
                outcome = "discarded"
            self.stdout.write(
                f"#{letter.pk} {letter.projector} outbox {letter.outbox_position} "
                f"{letter.aggregate_type}:{letter.aggregate_id} attempts {letter.attempts} "
                f"first {letter.first_seen_at:%Y-%m-%d %H:%M:%S} last "
                f"{letter.last_seen_at:%Y-%m-%d %H:%M:%S}  {letter.error[:80]}  {outcome}"
            )
        if not letters:
            self.stdout.write("no dead letters")
