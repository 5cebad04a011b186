"""Projected reads: Elasticsearch and Redis only, never the write tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from readmodels.stores import es, redis_store

# Elasticsearch's index.max_result_window (the default, which the indices keep): a
# from/size search may not reach past this many hits. Deeper pages need search_after.
MAX_RESULT_WINDOW = 10_000

PRODUCT_SORTS = {
    "relevance": ["_score", {"product_id": "asc"}],
    "price_asc": [{"price_cents": "asc"}, {"product_id": "asc"}],
    "price_desc": [{"price_cents": "desc"}, {"product_id": "asc"}],
    "name": [{"name.keyword": "asc"}, {"product_id": "asc"}],
    "newest": [{"product_id": "desc"}],
}


@dataclass(frozen=True)
class ProductSearch:
    q: str = ""
    category: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    in_stock: bool | None = None
    sort: str = "relevance"
    page: int = 1
    page_size: int = 20


def search_products(params: ProductSearch) -> dict:
    filters: list[dict] = [{"term": {"active": True}}]
    if params.min_price is not None or params.max_price is not None:
        price = {}
        if params.min_price is not None:
            price["gte"] = params.min_price
        if params.max_price is not None:
            price["lte"] = params.max_price
        filters.append({"range": {"price_cents": price}})
    if params.in_stock is not None:
        filters.append({"term": {"in_stock": params.in_stock}})
    must: list[dict] = []
    if params.q:
        must.append(
            {
                "bool": {
                    "should": [
                        {"term": {"sku": {"value": params.q, "boost": 10}}},
                        {"term": {"name.keyword": {"value": params.q, "boost": 5}}},
                        {
                            "multi_match": {
                                "query": params.q,
                                "fields": ["name^3", "description"],
                                "fuzziness": "AUTO",
                                "prefix_length": 1,
                            }
                        },
                    ],
                    "minimum_should_match": 1,
                }
            }
        )
    sort = params.sort if params.q or params.sort != "relevance" else "name"
    body = {
        "query": {"bool": {"must": must or [{"match_all": {}}], "filter": filters}},
        # The category filter applies to hits but not to the facet, so the facet shows
        # how many results each category would give.
        "post_filter": {"term": {"category": params.category}} if params.category else None,
        "aggs": {"categories": {"terms": {"field": "category", "size": 50}}},
        "sort": PRODUCT_SORTS[sort],
        "from": (params.page - 1) * params.page_size,
        "size": params.page_size,
        "track_total_hits": True,
    }
    response = es.search("products_search", **{k: v for k, v in body.items() if v is not None})
    hits = response["hits"]
    return {
        "count": hits["total"]["value"],
        "page": params.page,
        "page_size": params.page_size,
        "results": [
            {**hit["_source"], "score": hit.get("_score")} for hit in hits["hits"]
        ],
        "facets": {
            "category": [
                {"value": b["key"], "count": b["doc_count"]}
                for b in response["aggregations"]["categories"]["buckets"]
            ]
        },
    }


ORDER_FIELDS = [
    "order_id",
    "customer_id",
    "customer_name",
    "customer_email",
    "status",
    "total_cents",
    "item_count",
    "item_names",
    "skus",
    "created_at",
    "paid_at",
    "cancelled_at",
    "shipped_at",
]


def _order(source: dict) -> dict:
    return {field: source.get(field) for field in ORDER_FIELDS}


def customer_orders(
    *,
    customer_id: int,
    status: str | None,
    page_size: int,
    search_after: list | None,
    user_id: int | None = None,
) -> dict:
    """A customer's orders, newest first; only those of `user_id` when it is given."""
    filters: list[dict] = [{"term": {"customer_id": customer_id}}]
    if user_id is not None:
        filters.append({"term": {"user_id": user_id}})
    if status:
        filters.append({"term": {"status": status}})
    body = {
        "query": {"bool": {"filter": filters}},
        "sort": [{"created_at": "desc"}, {"order_id": "desc"}],
        "size": page_size,
        "track_total_hits": True,
    }
    if search_after:
        body["search_after"] = search_after
    response = es.search("orders_search", **body)
    hits = response["hits"]["hits"]
    return {
        "count": response["hits"]["total"]["value"],
        "results": [_order(hit["_source"]) for hit in hits],
        "next_search_after": hits[-1]["sort"] if len(hits) == page_size else None,
    }


def search_orders(*, q: str, page: int, page_size: int) -> dict:
    query = {
        "bool": {
            "should": [
                {"term": {"order_id": {"value": q, "boost": 10}}},
                {"term": {"customer_email": {"value": q.lower(), "boost": 8}}},
                {"term": {"skus": {"value": q, "boost": 8}}},
                {
                    "multi_match": {
                        "query": q,
                        "fields": ["customer_name^2", "item_names"],
                        "fuzziness": "AUTO",
                        "prefix_length": 1,
                    }
                },
            ],
            "minimum_should_match": 1,
        }
    }
    response = es.search(
        "orders_search",
        query=query,
        sort=["_score", {"created_at": "desc"}, {"order_id": "desc"}],
        **{"from": (page - 1) * page_size},
        size=page_size,
        track_total_hits=True,
    )
    return {
        "count": response["hits"]["total"]["value"],
        "page": page,
        "page_size": page_size,
        "results": [_order(hit["_source"]) for hit in response["hits"]["hits"]],
    }


REVENUE_STATUSES = ["paid", "shipped"]


def _fixed_offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _es_time_zone(zone: ZoneInfo, start: datetime, end: datetime) -> str:
    """The zone as Elasticsearch should get it for buckets between start and end.

    A zone whose offset is the same all over the window gives the same buckets as that
    fixed offset, which every Elasticsearch-compatible server understands; a window with
    a daylight-saving change in it needs the zone's name. Calendar weeks and months can
    start up to a month before `start`, so the check starts that much earlier.
    """
    probe = start - timedelta(days=31)
    offsets = {end.astimezone(zone).utcoffset()}
    while probe < end and len(offsets) == 1:
        offsets.add(probe.astimezone(zone).utcoffset())
        probe += timedelta(days=1)
    if len(offsets) == 1:
        return _fixed_offset(offsets.pop())
    return zone.key


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def order_stats(*, start: datetime, end: datetime, interval: str, time_zone: ZoneInfo) -> dict:
    """Orders created in [start, end): per status, and per calendar bucket in time_zone."""
    response = es.search(
        "orders_search",
        size=0,
        query={"range": {"created_at": {"gte": start.isoformat(), "lt": end.isoformat()}}},
        aggs={
            "by_status": {
                "terms": {"field": "status", "size": 10},
                "aggs": {"revenue": {"sum": {"field": "total_cents"}}},
            },
            "over_time": {
                "date_histogram": {
                    "field": "created_at",
                    "calendar_interval": interval,
                    "time_zone": _es_time_zone(time_zone, start, end),
                    "min_doc_count": 0,
                    # Both bounds are inclusive in Elasticsearch; `end` is exclusive here,
                    # so the last bucket is the one holding the last millisecond before it.
                    "extended_bounds": {"min": _epoch_ms(start), "max": _epoch_ms(end) - 1},
                },
                "aggs": {
                    "revenue": {
                        "filter": {"terms": {"status": REVENUE_STATUSES}},
                        "aggs": {"total": {"sum": {"field": "total_cents"}}},
                    }
                },
            },
        },
    )
    aggs = response["aggregations"]
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "interval": interval,
        "time_zone": time_zone.key,
        "by_status": [
            {
                "status": b["key"],
                "count": b["doc_count"],
                "total_cents": int(b["revenue"]["value"] or 0),
            }
            for b in aggs["by_status"]["buckets"]
        ],
        "buckets": [
            {
                # From the key (epoch ms), in the caller's zone: the same text whatever
                # the server's date format.
                "start": datetime.fromtimestamp(b["key"] / 1000, time_zone).isoformat(),
                "count": b["doc_count"],
                "revenue_cents": int(b["revenue"]["total"]["value"] or 0),
            }
            for b in aggs["over_time"]["buckets"]
        ],
    }


def order_summary(order_id: str) -> tuple[int, dict] | None:
    return redis_store.read_document("order_summary", order_id)


def customer_dashboard(customer_id: int) -> tuple[int, dict] | None:
    return redis_store.read_document("customer_dashboard", str(customer_id))
