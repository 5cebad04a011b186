"""Input fields that take JSON as the schema says it is, and query parameters as sent.

DRF's fields coerce: a CharField stores the number 4242 as "4242", an IntegerField
reads "12" and a BooleanField reads "yes" or 1. The OpenAPI schema says string,
integer and boolean, and a client relying on the coercion relies on something the
schema does not promise; so the API's JSON inputs use these fields, which refuse a
value of another JSON type with the field's usual `invalid` error.

Query parameters are strings by nature; QueryParameters makes an empty one (`?sort=`)
a value to validate, not the absent parameter DRF's form handling reads it as, and
reads integers and booleans as OpenAPI writes them in a query: `-12`, `true`, `false`.
"""

from __future__ import annotations

import re

from django.core.validators import RegexValidator
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail


class _Strict:
    json_types: tuple[type, ...] = ()

    def to_internal_value(self, data):
        if not isinstance(data, self.json_types) or (
            isinstance(data, bool) and bool not in self.json_types
        ):
            self.fail("invalid")
        return super().to_internal_value(data)


class CharField(_Strict, serializers.CharField):
    """A JSON string, with what else DRF refuses in one stated in the schema's pattern.

    DRF refuses NUL, and trims surrounding whitespace before its checks: a string of
    only whitespace is blank, and the length counted is the trimmed one. The pattern
    says the first two; the length is counted as sent, so maxLength holds as declared.
    """

    json_types = (str,)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # drf-spectacular writes the first RegexValidator as the field's `pattern`, and a
        # field that may be blank as oneOf that pattern or "": so the pattern must not
        # match "" too (DRF never runs validators on a blank value).
        pattern = r"^[^\x00]+$" if self.allow_blank else r"^[^\x00]*[^\x00\s][^\x00]*$"
        self.validators.insert(0, RegexValidator(
            pattern, code="null_characters_not_allowed" if self.allow_blank else "blank",
            message="Must not hold NUL characters" + ("." if self.allow_blank else
                                                     " or only whitespace."),
        ))

    def to_internal_value(self, data):
        if self.max_length is not None and isinstance(data, str) and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


class EmailField(_Strict, serializers.EmailField):
    json_types = (str,)


class RegexField(_Strict, serializers.RegexField):
    json_types = (str,)


class IntegerField(_Strict, serializers.IntegerField):
    # 3.0 is an integer to JSON Schema; "3" is not.
    json_types = (int, float)


class BooleanField(_Strict, serializers.BooleanField):
    json_types = (bool,)


class QueryParameters(serializers.Serializer):
    """A serializer of query parameters: `?name=` is the value "", never "not sent".

    DRF reads a QueryDict as an HTML form, where an empty optional field counts as
    absent; an API parameter sent empty is a mistake to refuse (each field's own
    blank/invalid error), as the schema gives no parameter an empty value. A repeated
    parameter counts once, by its last value (as QueryDict.get reads it).
    """

    def __init__(self, instance=None, data=serializers.empty, **kwargs):
        if hasattr(data, "dict"):
            data = data.dict()
        super().__init__(instance, data, **kwargs)

    def to_internal_value(self, data):
        # DRF's IntegerField also reads "5.0", " 5", "+5" and "1_0"; its BooleanField
        # "1", "yes" and "on": none of them is an integer or a boolean to the schema.
        written = {serializers.IntegerField: (_QUERY_INTEGER, "A valid integer is required."),
                   serializers.BooleanField: (_QUERY_BOOLEAN, "Must be true or false.")}
        errors = {}
        for name, field in self.fields.items():
            for kind, (pattern, message) in written.items():
                value = data.get(name) if hasattr(data, "get") else None
                if isinstance(field, kind) and isinstance(value, str) and not (
                    pattern.fullmatch(value)
                ):
                    errors[name] = [ErrorDetail(message, code="invalid")]
        if errors:
            raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


_QUERY_INTEGER = re.compile(r"-?[0-9]{1,20}")
_QUERY_BOOLEAN = re.compile(r"true|false")
