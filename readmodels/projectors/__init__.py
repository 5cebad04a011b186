"""The projectors, one per read model, by name."""

from __future__ import annotations

from readmodels.projectors.base import Projector
from readmodels.projectors.customer_dashboard import CustomerDashboardProjector
from readmodels.projectors.order_summary import OrderSummaryProjector
from readmodels.projectors.orders_search import OrdersSearchProjector
from readmodels.projectors.products_search import ProductsSearchProjector

PROJECTORS: dict[str, Projector] = {
    p.name: p
    for p in (
        ProductsSearchProjector(),
        OrdersSearchProjector(),
        OrderSummaryProjector(),
        CustomerDashboardProjector(),
    )
}


def get(name: str) -> Projector:
    try:
        return PROJECTORS[name]
    except KeyError:
        raise KeyError(f"no projector named {name!r}; known: {sorted(PROJECTORS)}") from None


def consuming(aggregate_types) -> list[Projector]:
    wanted = set(aggregate_types)
    return [p for p in PROJECTORS.values() if wanted & set(p.consumes)]
