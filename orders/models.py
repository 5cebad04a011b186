"""Normalised write model of the shop, the transactional outbox and idempotency keys.

Application code never saves these models directly: it calls orders.commands, which
change the rows, bump the aggregate version and append outbox rows in one transaction.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Func, Q

from orders.money import format_cents

# Bigint columns hold up to 2**63-1; sums of money past this are refused instead of
# overflowing.
MAX_CENTS = 10**15


class Xid8Field(models.Field):
    """PostgreSQL's 64-bit, epoch-extended transaction id (xid8), exposed as an int."""

    description = "PostgreSQL transaction id (xid8)"

    def db_type(self, connection):
        return "xid8"

    def from_db_value(self, value, expression, connection):
        return None if value is None else int(value)

    def to_python(self, value):
        return None if value is None else int(value)

    def get_prep_value(self, value):
        return None if value is None else str(int(value))


class Customer(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="customer"
    )
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200)
    balance_cents = models.BigIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)
    # Bumped only when name or email change: documents that show the profile but not
    # the balance (an order's search document) are versioned by it.
    profile_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(balance_cents__gte=0), name="customer_balance_not_negative"
            ),
        ]
        # Crediting a balance creates money the shop has not received: a back-office
        # power of its own, not something every staff member or customer may do.
        permissions = [("top_up_balance", "Can credit a customer's balance")]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class Product(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    category = models.CharField(max_length=100, db_index=True)
    price_cents = models.BigIntegerField()
    stock = models.IntegerField(default=0)
    active = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(price_cents__gt=0), name="product_price_positive"),
            models.CheckConstraint(condition=Q(stock__gte=0), name="product_stock_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class OrderStatus(models.TextChoices):
    PENDING = "pending"
    PAID = "paid"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


# The only moves an order's status may make.
ALLOWED_TRANSITIONS = {
    OrderStatus.PENDING: {OrderStatus.PAID, OrderStatus.CANCELLED},
    OrderStatus.PAID: {OrderStatus.SHIPPED, OrderStatus.CANCELLED},
    OrderStatus.SHIPPED: set(),
    OrderStatus.CANCELLED: set(),
}


class Order(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(
        max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING
    )
    total_cents = models.BigIntegerField()
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["customer", "-created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(total_cents__gte=0), name="order_total_not_negative"),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in OrderStatus]), name="order_status_valid"
            ),
            # A timestamp per state, set exactly when the order is in or passed that state.
            models.CheckConstraint(
                condition=Q(status="pending", paid_at__isnull=True) | ~Q(status="pending"),
                name="order_pending_not_paid",
            ),
            models.CheckConstraint(
                condition=Q(status="shipped", paid_at__isnull=False) | ~Q(status="shipped"),
                name="order_shipped_was_paid",
            ),
        ]
        # Staff act on customers' orders only with these (customers act on their own).
        permissions = [
            ("manage_orders", "Can place, pay and cancel orders for any customer"),
            ("ship_order", "Can mark paid orders shipped"),
        ]

    def __str__(self) -> str:
        return f"order {self.id} ({self.status})"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.IntegerField()
    # As they were when the order was placed; the catalogue may change later.
    unit_price_cents = models.BigIntegerField()
    product_name = models.CharField(max_length=200)
    product_sku = models.CharField(max_length=64)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_line_quantity_positive"),
            models.CheckConstraint(
                condition=Q(unit_price_cents__gt=0), name="order_line_price_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.product_name} ({format_cents(self.unit_price_cents)} each)"


class PaymentKind(models.TextChoices):
    CHARGE = "charge"
    REFUND = "refund"


class Payment(models.Model):
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="payments")
    kind = models.CharField(max_length=8, choices=PaymentKind.choices, default=PaymentKind.CHARGE)
    amount_cents = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # An order is charged at most once and refunded at most once.
            models.UniqueConstraint(fields=["order", "kind"], name="payment_once_per_kind"),
            models.CheckConstraint(condition=Q(amount_cents__gte=0), name="payment_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {format_cents(self.amount_cents)}"


class OutboxMessage(models.Model):
    """One row per aggregate a command changed, committed with that change.

    Readers must not order by position alone: a position is taken at INSERT, not at
    COMMIT. They read rows whose xid is below the snapshot's xmin, in (xid, position)
    order (see orders.outbox).
    """

    position = models.BigAutoField(primary_key=True)
    aggregate_type = models.CharField(max_length=32)
    aggregate_id = models.CharField(max_length=64)
    aggregate_version = models.PositiveIntegerField()
    event_type = models.CharField(max_length=64)
    payload = models.JSONField(default=dict)
    partition_key = models.CharField(max_length=64)
    xid = Xid8Field(db_default=Func(function="pg_current_xact_id", output_field=Xid8Field()))
    created_at = models.DateTimeField(
        db_default=Func(function="clock_timestamp", output_field=models.DateTimeField())
    )
    request_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["xid", "position"]
        indexes = [
            models.Index(F("xid"), F("position"), name="outbox_commit_order"),
            models.Index(fields=["aggregate_type", "aggregate_id"], name="outbox_aggregate"),
        ]

    def __str__(self) -> str:
        return f"#{self.position} {self.event_type} {self.aggregate_type}:{self.aggregate_id}"


class PaymentEvent(models.Model):
    """A payment provider's event that credited a balance, recorded once by its event id.

    Written in the same transaction as the credit, so a redelivered event finds its row
    and credits nothing twice.
    """

    event_id = models.CharField(max_length=255, unique=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+")
    amount_cents = models.BigIntegerField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_cents__gt=0), name="payment_event_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"payment event {self.event_id}"


class IdempotencyKey(models.Model):
    """A client's Idempotency-Key and the response it got, committed with the command."""

    owner = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    response_headers = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="idempotency_key_unique"),
        ]
