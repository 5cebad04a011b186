"""The `<id:...>` path converter: a row id, as PostgreSQL's bigint can hold it.

Django's `<int:...>` takes any run of digits; a number past bigint reached PostgreSQL,
which refused it ("numeric value out of range"), and the API answered 409 or 503 where
the row simply cannot exist. A number no id can be matches no route: a 404.
"""

from __future__ import annotations

from django.urls import register_converter

BIGINT_MAX = 2**63 - 1


class DatabaseId:
    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > BIGINT_MAX:
            raise ValueError("past bigint")  # Django: this route does not match
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(DatabaseId, "id")

