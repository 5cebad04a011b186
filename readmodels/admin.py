"""Projection admin: a dashboard of every projector segment, dead letters, rebuilds, reconciles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from readmodels import projectors
from readmodels.lag_chart import lag_chart
from readmodels.models import (
    Checkpoint,
    DeadLetter,
    DeadLetterStatus,
    LagSample,
    Rebuild,
    RebuildStatus,
    ReconcileRun,
)
from readmodels.operations import deadletters, reconcile, status

REFRESH_SECONDS = 15


@dataclass(frozen=True)
class RebuildProgress:
    """A rebuild as the page shows it: how far, how fast, and how long is left."""

    rebuild: Rebuild
    percent: int
    rate: float | None  # documents per second, on average since it started
    seconds_left: float | None

    @property
    def running(self) -> bool:
        return self.rebuild.status in (RebuildStatus.COPYING, RebuildStatus.CATCHING_UP)


def rebuild_progress(rebuild: Rebuild | None, now) -> RebuildProgress | None:
    if rebuild is None:
        return None
    total, copied = rebuild.total, min(rebuild.copied, rebuild.total or rebuild.copied)
    percent = 100 if not total else int(100 * copied / total)
    elapsed = ((rebuild.finished_at or now) - rebuild.started_at).total_seconds()
    rate = copied / elapsed if copied and elapsed > 0 else None
    left = (total - copied) / rate if rate and rebuild.status == RebuildStatus.COPYING else None
    return RebuildProgress(rebuild, percent, rate, left)


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
        holder = status.horizon_hold()
        current: dict[str, float] = {}
        dead: dict[str, int] = {}
        for r in rows:
            current[r.projector] = max(current.get(r.projector, 0.0), r.lag_seconds)
            dead[r.projector] = r.dead_letters
        context = {
            **self.admin_site.each_context(request),
            "title": "Projections",
            "refresh_seconds": REFRESH_SECONDS,
            "rows": rows,
            "horizon_advice": status.horizon_advice(holder) if holder else "",
            "chart": lag_chart(
                list(LagSample.objects.filter(at__gte=since)), since, now, current=current
            ),
            "reconciles": {name: reconcile.last_result(name) for name in projectors.PROJECTORS},
            "rebuilds": {
                name: rebuild_progress(Rebuild.objects.filter(projector=name).first(), now)
                for name in projectors.PROJECTORS
            },
            "dead_letters": dead,
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
