"""Django admin of the write model. Every save goes through a command, so it is in the outbox.

Amounts show as money ("$17.81"), orders by a short id; pages that cannot change
anything (orders, the outbox) are view pages, with no Save buttons.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import AdminSite
from django.contrib.admin.helpers import ActionForm
from django.utils.html import format_html
from rest_framework.exceptions import APIException

from orders import commands
from orders.api.base import announce_answered
from orders.models import Customer, Order, OrderLine, OutboxMessage, Payment, Product
from orders.money import format_cents


def _short_id(value) -> str:
    """The first block of a UUID: unique enough to tell orders apart on a page."""
    return str(value).split("-", 1)[0]


def _remember(request, result) -> None:
    """The staff user's own write: their next projected reads wait for it (session
    consistency), as for a command sent through the API. Best effort, after the commit."""
    announce_answered(sender=AdminSite, user_id=request.user.pk, token=result.token)


def _report(modeladmin, request, label: str, run) -> None:
    done, failed = 0, []
    for item, call in run:
        try:
            _remember(request, call())
            done += 1
        except APIException as exc:
            failed.append(f"{item}: {exc.detail}")
    if done:
        modeladmin.message_user(request, f"{label}: {done} done.", messages.SUCCESS)
    for failure in failed:
        modeladmin.message_user(request, f"{label} refused for {failure}", messages.ERROR)


class CommandAdminMixin:
    """No deletes: the write model has no delete command, and history must stay whole."""

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        try:
            _remember(request, self.save_with_command(request, obj, form, change))
        except APIException as exc:
            # Raising here would be a 500; the form is already valid, so report and stop.
            self.message_user(request, f"Not saved: {exc.detail}", messages.ERROR)
            raise _Refused() from exc

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _Refused:
            from django.http import HttpResponseRedirect

            return HttpResponseRedirect(request.get_full_path())

    def save_related(self, request, form, formsets, change):
        # Related rows are written by the commands themselves.
        pass


class _Refused(Exception):
    pass


@admin.register(Customer)
class CustomerAdmin(CommandAdminMixin, admin.ModelAdmin):
    list_display = ["id", "email", "name", "balance", "version", "created_at"]
    search_fields = ["email", "name"]
    list_filter = ["created_at"]
    readonly_fields = ["balance", "version", "created_at", "updated_at", "user"]
    fields = ["email", "name", "balance", "version", "user", "created_at", "updated_at"]

    @admin.display(description="balance", ordering="balance_cents")
    def balance(self, obj):
        return format_cents(obj.balance_cents)

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "email"] if obj else self.readonly_fields

    def save_with_command(self, request, obj, form, change):
        if change:
            result = commands.update_customer(customer_id=obj.pk, name=obj.name)
        else:
            result = commands.register_customer(email=obj.email, name=obj.name)
        obj.pk = result.value.pk
        obj.__dict__.update({k: v for k, v in result.value.__dict__.items() if k != "_state"})
        return result


class RestockForm(ActionForm):
    quantity = forms.IntegerField(min_value=1, max_value=1_000_000, required=False)


@admin.register(Product)
class ProductAdmin(CommandAdminMixin, admin.ModelAdmin):
    list_display = ["id", "sku", "name", "category", "price", "stock", "active", "version"]
    search_fields = ["sku", "name", "description"]
    list_filter = ["active", "category"]
    readonly_fields = ["price", "version", "created_at", "updated_at"]
    action_form = RestockForm
    actions = ["restock"]

    def get_readonly_fields(self, request, obj=None):
        # Stock changes through restock and orders only, never by typing a number.
        return [*self.readonly_fields, "sku", "stock"] if obj else self.readonly_fields

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "price_cents":
            # Typed in whole cents, as the API takes it: no rounding on the way in.
            field.label = "Price in cents"
            field.help_text = "For example 1781 for $17.81."
        return field

    @admin.display(description="price", ordering="price_cents")
    def price(self, obj):
        return format_cents(obj.price_cents) if obj.price_cents is not None else "-"

    def save_with_command(self, request, obj, form, change):
        if change:
            fields = {f: getattr(obj, f) for f in commands.PRODUCT_EDITABLE_FIELDS}
            result = commands.update_product(product_id=obj.pk, **fields)
        else:
            result = commands.create_product(
                sku=obj.sku,
                name=obj.name,
                description=obj.description,
                category=obj.category,
                price_cents=obj.price_cents,
                stock=obj.stock,
                active=obj.active,
            )
        obj.pk = result.value.pk
        obj.__dict__.update({k: v for k, v in result.value.__dict__.items() if k != "_state"})
        return result

    @admin.action(
        description="Restock selected products by the quantity given",
        permissions=["change"],
    )
    def restock(self, request, queryset):
        quantity = request.POST.get("quantity")
        if not quantity or not quantity.isdigit() or int(quantity) < 1:
            self.message_user(request, "Give a positive quantity to restock.", messages.ERROR)
            return
        _report(
            self,
            request,
            "Restock",
            [
                (p, lambda p=p: commands.restock_product(product_id=p.pk, quantity=int(quantity)))
                for p in queryset
            ],
        )


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    can_delete = False
    fields = readonly_fields = ["product_name", "product_sku", "quantity", "unit_price", "line_total"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="unit price")
    def unit_price(self, line):
        return format_cents(line.unit_price_cents)

    @admin.display(description="line total")
    def line_total(self, line):
        return format_cents(line.unit_price_cents * line.quantity)


class PaymentInline(admin.TabularInline):
    model = Payment
    extra = 0
    can_delete = False
    fields = readonly_fields = ["kind", "amount", "created_at"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="amount")
    def amount(self, payment):
        return format_cents(payment.amount_cents)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["short_id", "customer", "status", "total", "items", "version", "created_at"]
    list_display_links = ["short_id"]
    list_filter = ["status", "created_at"]
    search_fields = ["id", "customer__email", "customer__name", "lines__product_sku"]
    list_select_related = ["customer"]
    inlines = [OrderLineInline, PaymentInline]
    actions = ["cancel", "ship"]
    fields = readonly_fields = [
        "id",
        "customer",
        "status",
        "total",
        "version",
        "created_at",
        "updated_at",
        "paid_at",
        "shipped_at",
        "cancelled_at",
    ]

    def has_add_permission(self, request):
        # Orders are placed through the API, where stock is reserved.
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # The order page is a view page (no Save); changes are the cancel and ship
        # actions, which go through the commands.
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("lines")

    @admin.display(description="order", ordering="id")
    def short_id(self, order):
        return format_html('<span title="{}">{}</span>', order.pk, _short_id(order.pk))

    @admin.display(description="total", ordering="total_cents")
    def total(self, order):
        return format_cents(order.total_cents)

    @admin.display(description="items")
    def items(self, order):
        return ", ".join(f"{line.quantity} × {line.product_name}" for line in order.lines.all())

    def has_manage_orders_permission(self, request):
        return request.user.has_perm("orders.manage_orders")

    def has_ship_order_permission(self, request):
        return request.user.has_perm("orders.ship_order")

    @admin.action(
        description="Cancel selected orders (releases stock, refunds payments)",
        permissions=["manage_orders"],
    )
    def cancel(self, request, queryset):
        _report(
            self,
            request,
            "Cancel",
            [(o, lambda o=o: commands.cancel_order(order_id=o.pk)) for o in queryset],
        )

    @admin.action(description="Ship selected orders", permissions=["ship_order"])
    def ship(self, request, queryset):
        _report(
            self,
            request,
            "Ship",
            [(o, lambda o=o: commands.ship_order(order_id=o.pk)) for o in queryset],
        )


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = [
        "position",
        "xid",
        "event_type",
        "aggregate_type",
        "aggregate_id",
        "aggregate_version",
        "partition_key",
        "created_at",
    ]
    list_filter = ["aggregate_type", "event_type"]
    search_fields = ["aggregate_id", "request_id"]
    ordering = ["-position"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a view page: the outbox is written by commands only

    def has_delete_permission(self, request, obj=None):
        return False
