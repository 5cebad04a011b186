"""Input and output serializers of the write side's API."""

from django.core.validators import MaxLengthValidator, MinLengthValidator
from rest_framework import serializers

from orders.commands import MAX_ORDER_LINES
from orders.models import Customer, Order, OrderLine, Payment, Product
from shop.web import fields

BIGINT_MAX = 2**63 - 1
MAX_AMOUNT_CENTS = 10**12
MAX_PRICE_CENTS = 10**10
MAX_QUANTITY = 1_000_000
MAX_STOCK = 10**9


class CustomerIn(serializers.Serializer):
    email = fields.EmailField(max_length=254)
    name = fields.CharField(max_length=200)


class TopUpIn(serializers.Serializer):
    amount_cents = fields.IntegerField(min_value=1, max_value=MAX_AMOUNT_CENTS)


class PaymentEventIn(serializers.Serializer):
    """A payment provider's event: money received for a customer's balance."""

    event_id = fields.RegexField(r"^[\x21-\x7e]+$", max_length=255)
    customer_id = fields.IntegerField(min_value=1, max_value=BIGINT_MAX)
    amount_cents = fields.IntegerField(min_value=1, max_value=MAX_AMOUNT_CENTS)


class PaymentEventOut(serializers.Serializer):
    event_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["credited", "already_credited"])


class ProductIn(serializers.Serializer):
    sku = fields.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)
    name = fields.CharField(max_length=200)
    description = fields.CharField(max_length=5000, allow_blank=True, required=False)
    category = fields.CharField(max_length=100)
    price_cents = fields.IntegerField(min_value=1, max_value=MAX_PRICE_CENTS)
    stock = fields.IntegerField(min_value=0, max_value=MAX_STOCK, required=False)
    active = fields.BooleanField(required=False)


class ProductPatchIn(serializers.Serializer):
    name = fields.CharField(max_length=200, required=False)
    description = fields.CharField(max_length=5000, allow_blank=True, required=False)
    category = fields.CharField(max_length=100, required=False)
    price_cents = fields.IntegerField(
        min_value=1, max_value=MAX_PRICE_CENTS, required=False
    )
    active = fields.BooleanField(required=False)


class RestockIn(serializers.Serializer):
    quantity = fields.IntegerField(min_value=1, max_value=MAX_QUANTITY)


class OrderLineIn(serializers.Serializer):
    product_id = fields.IntegerField(min_value=1, max_value=BIGINT_MAX)
    quantity = fields.IntegerField(min_value=1, max_value=MAX_QUANTITY)


class OrderIn(serializers.Serializer):
    customer_id = fields.IntegerField(min_value=1, max_value=BIGINT_MAX, required=False)
    # The length validators too, as they are what drf-spectacular reads minItems and
    # maxItems from (it does not read allow_empty and max_length).
    lines = serializers.ListSerializer(
        child=OrderLineIn(), allow_empty=False, max_length=MAX_ORDER_LINES,
        validators=[MinLengthValidator(1), MaxLengthValidator(MAX_ORDER_LINES)],
    )


class CustomerOut(serializers.ModelSerializer):
    class Meta:
        model = Customer
        fields = ["id", "email", "name", "balance_cents", "version", "created_at", "updated_at"]


class ProductOut(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = [
            "id",
            "sku",
            "name",
            "description",
            "category",
            "price_cents",
            "stock",
            "active",
            "version",
            "created_at",
            "updated_at",
        ]


class OrderLineOut(serializers.ModelSerializer):
    class Meta:
        model = OrderLine
        fields = ["product_id", "product_sku", "product_name", "quantity", "unit_price_cents"]


class PaymentOut(serializers.ModelSerializer):
    class Meta:
        model = Payment
        fields = ["kind", "amount_cents", "created_at"]


class OrderOut(serializers.ModelSerializer):
    customer_id = serializers.IntegerField()
    lines = OrderLineOut(many=True)
    payments = PaymentOut(many=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "customer_id",
            "status",
            "total_cents",
            "version",
            "created_at",
            "updated_at",
            "paid_at",
            "shipped_at",
            "cancelled_at",
            "lines",
            "payments",
        ]


class Shown:
    """Shows objects as an output serializer does, with its fields built once.

    DRF builds a ModelSerializer's fields from the model each time one is made: 0.65 ms
    for an order, a fifteenth of a web process's CPU per order placed. These output
    serializers' fields never depend on the request, so one instance, built at import
    before any thread shares it, shows every object (to_representation keeps no state).
    """

    def __init__(self, serializer_class):
        self.serializer = serializer_class()
        _build_fields(self.serializer)

    def __call__(self, instance) -> dict:
        return self.serializer.to_representation(instance)


def _build_fields(serializer) -> None:
    """Build a serializer's fields and its nested serializers' now, not on first use."""
    for field in serializer.fields.values():
        nested = getattr(field, "child", field)  # a list of nested objects: its child
        if isinstance(nested, serializers.Serializer):
            _build_fields(nested)


show_customer = Shown(CustomerOut)
show_product = Shown(ProductOut)
show_order = Shown(OrderOut)


class MeOut(serializers.Serializer):
    id = serializers.IntegerField(help_text="The login's user id.")
    username = serializers.CharField()
    is_staff = serializers.BooleanField(help_text="Back-office login: acts for customers.")
    customer_id = serializers.IntegerField(
        allow_null=True, help_text="The customer this login is, or null (staff, or not yet)."
    )


class ApiResourceOut(serializers.Serializer):
    path = serializers.CharField()
    methods = serializers.ListField(child=serializers.CharField())
    consistency = serializers.ChoiceField(choices=["strong", "eventual", "command", "stream"])
    access = serializers.CharField(help_text="public, signed-in, owner or staff (permission).")
    description = serializers.CharField()


class ApiRootOut(serializers.Serializer):
    name = serializers.CharField()
    schema = serializers.URLField()
    docs = serializers.URLField()
    auth = serializers.CharField()
    resources = ApiResourceOut(many=True)
