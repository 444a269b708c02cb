"""Validation of the search parameters, shared by the API and the web UI."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from catalog.selectors.search import SORTS, SearchParams, query_problem

# Error codes of values that match the schema but cannot be used (answered 422, not 400).
SEMANTIC_CODES = frozenset({"unsearchable"})


class SearchParamsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    q = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    modality = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=255,
        default="",
        help_text="Slug path; matches the whole subtree, e.g. `image`.",
    )
    result = serializers.CharField(required=False, allow_blank=True, max_length=255, default="")
    domain = serializers.CharField(required=False, allow_blank=True, max_length=255, default="")
    team = serializers.SlugField(required=False, allow_blank=True, default="")
    framework = serializers.CharField(required=False, allow_blank=True, max_length=40, default="")
    min_precision = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1, default=None)
    runtime = serializers.CharField(required=False, allow_blank=True, max_length=30, default="")
    precision = serializers.CharField(required=False, allow_blank=True, max_length=10, default="")
    hardware = serializers.CharField(required=False, allow_blank=True, max_length=30, default="")
    max_p95_ms = serializers.FloatField(required=False, allow_null=True, min_value=0, default=None)
    sort = serializers.ChoiceField(choices=SORTS, required=False, default="relevance")
    license = serializers.CharField(
        required=False, allow_blank=True, max_length=100, default="", help_text="Licence from the model card."
    )
    tag = serializers.CharField(
        required=False, allow_blank=True, max_length=100, default="", help_text="A tag from the model card."
    )
    page = serializers.IntegerField(required=False, min_value=1, default=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)

    def validate_q(self, value: str) -> str:
        # Nothing searchable (only punctuation, one letter, only emoji) is refused,
        # not read as "everything".
        problem = query_problem(value)
        if problem:
            raise serializers.ValidationError(problem, code="unsearchable")
        return value

    def to_internal_value(self, data: Any) -> Any:
        # An empty number field in a form (?min_precision=) means "no bound".
        cleaned = {
            k: v for k, v in data.items() if not (k in ("min_precision", "max_p95_ms", "page", "page_size") and v == "")
        }
        return super().to_internal_value(cleaned)

    def search_params(self) -> SearchParams:
        data = dict(self.validated_data)
        data.pop("page")
        data.pop("page_size")
        return SearchParams(**data)


# --- fast path ------------------------------------------------------------------------------
# Building the serializer deep-copies its 18 fields on every request (~0.25 ms
# of a ~1 ms search). ``search_query`` reads a query the serializer would
# accept as it is and gives the same values; anything else (a value it would
# refuse or coerce in a less obvious way) returns None and the caller runs the
# serializer, which gives the errors. ``tests/catalog/api/test_params.py``
# holds the two to the same answers.

# Text fields and their max_length (CharField: trimmed, no NUL, no surrogates).
_TEXT = {
    name: field.max_length
    for name, field in SearchParamsSerializer._declared_fields.items()
    if type(field) is serializers.CharField
}
# page and page_size: (min_value, max_value, default).
_INT_FIELDS: dict[str, Any] = {
    name: field
    for name, field in SearchParamsSerializer._declared_fields.items()
    if isinstance(field, serializers.IntegerField)
}
_INTS: dict[str, tuple[int, float, int]] = {
    name: (field.min_value, math.inf if field.max_value is None else field.max_value, field.default)
    for name, field in _INT_FIELDS.items()
}
_SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")  # SlugField's validator (allow_unicode off)
_SURROGATE = re.compile("[\ud800-\udfff]")
_DIGITS = re.compile(r"[0-9]{1,9}")
_FLOATS = {
    name: (
        -math.inf if field.min_value is None else field.min_value,
        math.inf if field.max_value is None else field.max_value,
    )
    for name, field in SearchParamsSerializer._declared_fields.items()
    if type(field) is serializers.FloatField
}


def _text(value: Any, max_length: int | None) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    if value and ("\x00" in value or _SURROGATE.search(value) or (max_length is not None and len(value) > max_length)):
        return None
    return value


def search_query(query: Mapping[str, Any]) -> tuple[SearchParams, int, int] | None:
    """The search parameters, page and page size of ``query`` when
    ``SearchParamsSerializer`` would accept it as it is (the same values);
    None when the serializer must decide (it may refuse the query)."""
    values: dict[str, Any] = {}
    for name, max_length in _TEXT.items():
        raw = query.get(name)
        if raw is None:
            values[name] = ""
            continue
        text = _text(raw, max_length)
        if text is None or (name == "q" and query_problem(text)):
            return None
        values[name] = text
    team = query.get("team")
    if team is None:
        values["team"] = ""
    else:
        text = _text(team, None)
        if text is None or (text and not _SLUG.search(text)):
            return None
        values["team"] = text
    for name, (low, high) in _FLOATS.items():
        raw = query.get(name)
        if raw is None or raw == "":
            values[name] = None
            continue
        if not isinstance(raw, str) or len(raw) > 100:
            return None
        try:
            number = float(raw)
        except ValueError:
            return None
        if not (math.isfinite(number) and low <= number <= high):
            return None
        values[name] = number
    sort = query.get("sort")
    if sort is None:
        values["sort"] = "relevance"
    elif sort in SORTS:
        values["sort"] = sort
    else:
        return None
    numbers: list[int] = []
    for name in ("page", "page_size"):
        raw = query.get(name)
        low, high, default = _INTS[name]
        if raw is None or raw == "":
            numbers.append(default)
            continue
        if not isinstance(raw, str) or not _DIGITS.fullmatch(raw):
            return None
        number = int(raw)
        if not low <= number <= high:
            return None
        numbers.append(number)
    return SearchParams(**values), numbers[0], numbers[1]
