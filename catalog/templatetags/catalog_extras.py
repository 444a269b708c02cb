from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def pct(value: float | None, digits: int = 1) -> str:
    """0.9765 → '97.7%'; None (or a missing value) → '—'."""
    if value is None or value == "":
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


METRIC_LABELS = {
    "accuracy": "Accuracy",
    "macro_precision": "Macro precision",
    "macro_recall": "Macro recall",
    "macro_f1": "Macro F1",
    "coverage": "Coverage (confidence ≥ 0.9)",
    "precision_at_coverage": "Precision at that coverage",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
}
# Metrics that are shares of something (shown as %); anything else (a loss, a
# count, milliseconds) is shown as the number it is.
FRACTION_SUFFIXES = ("accuracy", "precision", "recall", "f1", "coverage")


@register.filter
def metric_label(name: str) -> str:
    """``macro_precision`` → "Macro precision"; unknown names are made readable."""
    return METRIC_LABELS.get(name, str(name).replace("_", " ").capitalize())


@register.filter
def metric_value(value: float | None, name: str) -> str:
    """A metric as the pages show it: shares as % (like every header), others as numbers."""
    if value is None:
        return "—"
    if str(name).endswith(FRACTION_SUFFIXES) and 0.0 <= value <= 1.0:
        return pct(value)
    return f"{value:.4g}"


@register.filter
def facet_shown(nodes: Any) -> bool:
    """A facet card is drawn only when it has a node to show (a count, or the selection)."""
    return any(getattr(n, "count", 0) or getattr(n, "selected", False) for n in nodes or [])
