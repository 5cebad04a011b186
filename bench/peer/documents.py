"""One document per order, kept in sync by the library's signal processor.

Declared the library's documented way: the order's own fields, the customer as an
object and the lines as nested objects, with Customer and OrderLine as related models
so that a save of either re-indexes its orders."""

from django.conf import settings
from django_elasticsearch_dsl import Document, fields
from django_elasticsearch_dsl.registries import registry

from orders.models import Customer, Order, OrderLine


@registry.register_document
class PeerOrderDocument(Document):
    order_id = fields.KeywordField()
    customer = fields.ObjectField(properties={
        "name": fields.TextField(),
        "email": fields.KeywordField(),
    })
    lines = fields.NestedField(properties={
        "product_name": fields.TextField(),
        "quantity": fields.IntegerField(),
    })

    class Index:
        name = f"{settings.READMODELS['NAMESPACE']}_peer_orders"
        settings = {"number_of_shards": 1, "number_of_replicas": 0}

    class Django:
        model = Order
        fields = ["status", "total_cents", "version", "created_at"]
        related_models = [Customer, OrderLine]

    def prepare_order_id(self, instance):
        return str(instance.pk)

    def generate_id(self, instance):
        return str(instance.pk)

    def get_queryset(self):
        return super().get_queryset().select_related("customer").prefetch_related("lines")

    def get_instances_from_related(self, related_instance):
        if isinstance(related_instance, Customer):
            return related_instance.orders.all()
        if isinstance(related_instance, OrderLine):
            return related_instance.order
        return None
