"""Projection admin: a dashboard of every projector segment, dead letters, rebuilds, reconciles."""

from __future__ import annotations

import math
from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from readmodels import config, projectors
from readmodels.models import (
    Checkpoint,
    DeadLetter,
    DeadLetterStatus,
    LagSample,
    Rebuild,
    ReconcileRun,
)
from readmodels.operations import deadletters, reconcile, status

CHART_WIDTH, CHART_HEIGHT = 760, 240
# Room for the y-axis labels on the left and the time labels below.
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 52, 12, 10, 28
COLOURS = ["#2563eb", "#16a34a", "#db2777", "#ea580c", "#7c3aed", "#0891b2"]
# Series overlap wherever their lag is equal (at zero, most of the time): each one is
# drawn narrower than the one below it, so every colour stays visible as a band.
WIDEST_STROKE = 9
REFRESH_SECONDS = 15


def _nice_step(top: float, ticks: int = 4) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) that covers `top` in ~`ticks`."""
    raw = top / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _seconds_label(value: float) -> str:
    return f"{value:g} s"


def lag_chart(samples: list[LagSample], since, now, slos: dict[str, float] | None = None) -> dict:
    """Server-side SVG of lag over the window, one series per projector (max over segments).

    Axes with ticks, a dashed line per distinct lag SLO, the time of day (UTC) below.
    """
    slos = slos if slos is not None else {n: config.slo_seconds(n) for n in projectors.PROJECTORS}
    series: dict[str, dict] = {}
    for sample in samples:
        points = series.setdefault(sample.projector, {})
        points[sample.at] = max(points.get(sample.at, 0.0), sample.lag_seconds)
    highest = max([0.0] + [v for points in series.values() for v in points.values()])
    # The SLO stays in view even when every lag is far below it.
    step = _nice_step(max(highest, *slos.values(), 1.0) * 1.1)
    top = step * math.ceil(max(highest, *slos.values(), 1.0) * 1.1 / step)
    plot_w = CHART_WIDTH - PLOT_LEFT - PLOT_RIGHT
    plot_h = CHART_HEIGHT - PLOT_TOP - PLOT_BOTTOM
    span = max((now - since).total_seconds(), 1)

    def x(at) -> float:
        return PLOT_LEFT + (at - since).total_seconds() / span * plot_w

    def y(value: float) -> float:
        return PLOT_TOP + plot_h - min(value, top) / top * plot_h

    y_ticks = [
        {"y": f"{y(step * i):.1f}", "label": _seconds_label(round(step * i, 6))}
        for i in range(int(round(top / step)) + 1)
    ]
    # Time ticks on whole ten minutes, labelled in UTC like every time in the admin.
    first = since.replace(minute=since.minute - since.minute % 10, second=0, microsecond=0)
    x_ticks, at = [], first
    while at <= now:
        if at >= since:
            x_ticks.append({"x": f"{x(at):.1f}", "label": at.strftime("%H:%M")})
        at += timedelta(minutes=10)
    slo_lines = [
        {
            "y": f"{y(value):.1f}",
            "label": f"SLO {_seconds_label(value)} ("
            + ", ".join(sorted(n for n, v in slos.items() if v == value))
            + ")",
        }
        for value in sorted(set(slos.values()))
        if value <= top
    ]
    names = sorted(series)
    lines = []
    for index, name in enumerate(names):
        ordered = sorted(series[name].items())
        coords = " ".join(f"{x(at):.1f},{y(value):.1f}" for at, value in ordered)
        lines.append({
            "name": name,
            "points": coords,
            "colour": COLOURS[index % len(COLOURS)],
            "width": max(WIDEST_STROKE - 2 * index, 1.5),
            "latest": _seconds_label(round(ordered[-1][1], 2)),
            # A dot at the newest sample: a series of one sample has no line to draw.
            "end_x": f"{x(ordered[-1][0]):.1f}",
            "end_y": f"{y(ordered[-1][1]):.1f}",
        })
    return {
        "lines": lines, "top": top, "width": CHART_WIDTH, "height": CHART_HEIGHT,
        "left": PLOT_LEFT, "right": CHART_WIDTH - PLOT_RIGHT, "top_y": PLOT_TOP,
        "bottom": PLOT_TOP + plot_h, "y_ticks": y_ticks, "x_ticks": x_ticks,
        "slo_lines": slo_lines, "since": since, "now": now,
    }


def _require(request, permission: str) -> None:
    """Refuse a staff user without `permission` (a 403; staff status alone is not enough)."""
    if not request.user.has_perm(f"readmodels.{permission}"):
        raise PermissionDenied(f"This needs the permission readmodels.{permission}.")


@admin.register(Checkpoint)
class ProjectionsAdmin(admin.ModelAdmin):
    """The changelist is the projections dashboard."""

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("readmodels.view_projections")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a view page, with no Save: nothing here is edited by hand

    def get_urls(self):
        own = [
            path("rebuild/<str:name>/", self.admin_site.admin_view(self.start_rebuild),
                 name="readmodels_rebuild"),
            path("reconcile/<str:name>/", self.admin_site.admin_view(self.run_reconcile),
                 name="readmodels_reconcile"),
            path("retry-dead-letters/<str:name>/",
                 self.admin_site.admin_view(self.retry_dead_letters),
                 name="readmodels_retry_dead_letters"),
        ]
        return own + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        _require(request, "view_projections")
        now = timezone.now()
        since = now - timedelta(hours=1)
        rows = status.segment_statuses()
        previous = {}
        for sample in LagSample.objects.filter(at__gte=now - timedelta(minutes=1)).order_by("at"):
            previous.setdefault((sample.projector, sample.segment), sample)
        context = {
            **self.admin_site.each_context(request),
            "title": "Projections",
            "refresh_seconds": REFRESH_SECONDS,
            "rows": rows,
            "chart": lag_chart(list(LagSample.objects.filter(at__gte=since)), since, now),
            "reconciles": {name: reconcile.last_result(name) for name in projectors.PROJECTORS},
            "rebuilds": {
                name: Rebuild.objects.filter(projector=name).first()
                for name in projectors.PROJECTORS
            },
            "names": list(projectors.PROJECTORS),
            # Buttons show only for the operations this user may run.
            "can": {
                operation: request.user.has_perm(f"readmodels.{operation}")
                for operation in (
                    "rebuild_read_model", "reconcile_read_model", "repair_read_model",
                    "retry_dead_letters",
                )
            },
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/readmodels/projections.html", context)

    def _back(self):
        return HttpResponseRedirect(reverse("admin:readmodels_checkpoint_changelist"))

    def _confirm(self, request, name, *, title, action, warning, repair=False):
        """The GET page that asks before an operation runs; its form POSTs back here."""
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "read_model": name,
            "warning": warning,
            "action": action,
            "repair": repair,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/readmodels/confirm.html", context)

    def start_rebuild(self, request, name):
        """GET asks for confirmation; POST queues the rebuild for a worker (a rebuild
        copies every row: never inside the request)."""
        _require(request, "rebuild_read_model")
        if name not in projectors.PROJECTORS:
            raise Http404("No such read model.")
        if request.method != "POST":
            return self._confirm(
                request, name, title=f"Rebuild {name}?", action="Rebuild",
                warning="A new index is filled from PostgreSQL while the current one keeps "
                "serving reads, then reads switch to it. It takes as long as copying every "
                "row, on a worker.",
            )
        from readmodels.tasks import rebuild_read_model

        rebuild_read_model.delay(name)
        self.message_user(request, f"Rebuild of {name} queued; progress shows below.")
        return self._back()

    def run_reconcile(self, request, name):
        """GET asks for confirmation; POST queues the reconcile for a worker (it reads the
        whole write model and view: never inside the request)."""
        repair = (request.POST if request.method == "POST" else request.GET).get("repair") == "1"
        _require(request, "repair_read_model" if repair else "reconcile_read_model")
        if name not in projectors.PROJECTORS:
            raise Http404("No such read model.")
        if request.method != "POST":
            return self._confirm(
                request, name, repair=repair,
                title=f"Reconcile {name}{' and repair' if repair else ''}?",
                action="Reconcile and repair" if repair else "Reconcile",
                warning="Every row of the write model is compared with the view, on a worker."
                + (" Differences found are re-projected from PostgreSQL." if repair else
                   " Nothing is changed."),
            )
        from readmodels.tasks import reconcile_read_model

        reconcile_read_model.delay(name, repair=repair)
        self.message_user(
            request,
            f"Reconcile of {name}{' with repair' if repair else ''} queued; its result "
            "shows below (last reconcile) when the worker is done.",
            messages.INFO,
        )
        return self._back()

    def retry_dead_letters(self, request, name):
        _require(request, "retry_dead_letters")
        if request.method != "POST":
            return self._back()
        letters = DeadLetter.objects.filter(projector=name, status=DeadLetterStatus.DEAD)
        ok = sum(1 for letter in letters if deadletters.retry(letter))
        self.message_user(request, f"Retried dead letters of {name}: {ok} resolved.")
        return self._back()


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = [
        "id", "projector", "outbox_position", "aggregate", "short_error", "attempts",
        "status", "first_seen_at", "last_seen_at",
    ]
    list_filter = ["status", "projector"]
    search_fields = ["aggregate_id", "error"]
    actions = ["retry", "discard"]
    readonly_fields = [f.name for f in DeadLetter._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a view page; retry and discard are the actions

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="aggregate")
    def aggregate(self, obj):
        return f"{obj.aggregate_type}:{obj.aggregate_id}"

    @admin.display(description="error")
    def short_error(self, obj):
        return format_html("<code>{}</code>", obj.error[:120])

    def has_retry_dead_letters_permission(self, request):
        return request.user.has_perm("readmodels.retry_dead_letters")

    def has_discard_dead_letters_permission(self, request):
        return request.user.has_perm("readmodels.discard_dead_letters")

    @admin.action(
        description="Retry selected dead letters (re-project their aggregates)",
        permissions=["retry_dead_letters"],
    )
    def retry(self, request, queryset):
        done = sum(1 for letter in queryset if deadletters.retry(letter))
        self.message_user(request, f"{done} of {queryset.count()} resolved.")

    @admin.action(description="Discard selected dead letters", permissions=["discard_dead_letters"])
    def discard(self, request, queryset):
        for letter in queryset:
            deadletters.discard(letter)
        self.message_user(request, f"{queryset.count()} discarded.")


@admin.register(ReconcileRun)
class ReconcileRunAdmin(admin.ModelAdmin):
    list_display = [
        "projector", "finished_at", "checked", "missing", "behind", "ahead", "stray",
        "repaired", "seconds",
    ]
    list_filter = ["projector"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a view page, with no Save: nothing here is edited by hand


@admin.register(Rebuild)
class RebuildAdmin(admin.ModelAdmin):
    list_display = ["projector", "generation", "status", "copied", "total", "started_at",
                    "finished_at", "error"]
    list_filter = ["projector", "status"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a view page, with no Save: nothing here is edited by hand
