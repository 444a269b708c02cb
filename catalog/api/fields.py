"""Request-serializer helpers shared by the API modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers


class StrictStringsMixin:
    """Refuse a JSON number or boolean where the schema says string.

    DRF's ``CharField`` turns ``12`` into ``"12"``; the OpenAPI schema promises
    a string, so a client sending anything else gets a 400 naming the field.
    Mix in before ``serializers.Serializer``.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            errors: dict[str, list[str]] = {}
            for name, field in self.fields.items():  # type: ignore[attr-defined]
                value = data.get(name)
                if value is None:
                    continue
                if isinstance(field, serializers.CharField) and not isinstance(value, str):
                    errors[name] = ["Not a valid string."]
                elif (
                    isinstance(field, serializers.ListField)
                    and isinstance(field.child, serializers.CharField)
                    and isinstance(value, list)
                    and not all(isinstance(item, str) for item in value)
                ):
                    errors[name] = ["Every item must be a string."]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)  # type: ignore[misc]
