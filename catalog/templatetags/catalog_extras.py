from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def pct(value: float | None, digits: int = 1) -> str:
    """0.9765 → '97.7%'; None → '—'."""
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f}%"


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


@register.filter
def metric(version: Any, name: str) -> float | None:
    return version.metric(name) if version is not None else None


@register.filter
def get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if hasattr(mapping, "get") else None
