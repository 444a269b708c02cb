"""Validation of the search parameters, shared by the API and the web UI."""

from __future__ import annotations

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
