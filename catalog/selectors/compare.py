"""Side-by-side comparison of up to ``MAX_COMPARE`` models (reads only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Prefetch

from catalog.models import ModelVersion, RegisteredModel, Variant, VariantStatus
from catalog.selectors.lineage import lineage_refs
from catalog.selectors.visibility import models_visible

MAX_COMPARE = 4
# Metrics where a smaller value is better.
LOWER_IS_BETTER = ("latency", "loss", "error", "_ms")


class TooMany(ValueError):
    pass


def slugs_parse(values: list[str]) -> list[str]:
    """``?models=a,b&models=c`` → ``[a, b, c]``, in order, without repeats or blanks."""
    out: list[str] = []
    for value in values:
        for slug in value.split(","):
            slug = slug.strip()
            if slug and slug not in out:
                out.append(slug)
    return out


@dataclass
class Cell:
    value: Any
    display: str = ""
    best: bool = False


@dataclass
class CompareRow:
    section: str
    label: str
    cells: list[Cell]
    differs: bool = False


@dataclass
class Comparison:
    models: list[RegisteredModel]
    versions: list[ModelVersion | None]
    rows: list[CompareRow] = field(default_factory=list)
    metric_rows: list[CompareRow] = field(default_factory=list)
    variant_rows: list[CompareRow] = field(default_factory=list)


def _row(section: str, label: str, values: list[Any], display: list[str] | None = None) -> CompareRow:
    shown = display or ["—" if v in (None, "", []) else str(v) for v in values]
    return CompareRow(
        section, label, [Cell(v, d) for v, d in zip(values, shown, strict=True)], differs=len(set(shown)) > 1
    )


def _size(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def models_compare(*, user: Any, slugs: list[str]) -> tuple[Comparison | None, list[str]]:
    """The comparison, or ``None`` and the slugs that are missing — hidden ones
    are reported exactly like missing ones. Raises ``TooMany`` past four."""
    if len(slugs) > MAX_COMPARE:
        raise TooMany(f"Compare at most {MAX_COMPARE} models at a time ({len(slugs)} were picked).")
    versions_qs = ModelVersion.objects.prefetch_related(
        "metrics", Prefetch("variants", queryset=Variant.objects.order_by("latency_p95_ms", "name"))
    ).select_related("base_version__registered_model", "dataset_version__dataset")
    found = {
        m.slug: m
        for m in models_visible(user=user)
        .filter(slug__in=slugs)
        .select_related("team", "modality", "result_kind", "domain")
        .prefetch_related(Prefetch("latest_version", queryset=versions_qs))
    }
    missing = [s for s in slugs if s not in found]
    if missing:
        return None, missing
    models = [found[s] for s in slugs]
    versions = [m.latest_version for m in models]
    cmp = Comparison(models=models, versions=versions)
    refs = lineage_refs(user=user, versions=[v for v in versions if v is not None])

    def vget(attr: str) -> list[Any]:
        return [getattr(v, attr) if v is not None else None for v in versions]

    cmp.rows += [
        _row("Artifact", "Family", vget("family")),
        _row("Artifact", "Framework", vget("framework")),
        _row(
            "Artifact",
            "Parameters",
            vget("parameter_count"),
            [f"{p:,}" if p is not None else "—" for p in vget("parameter_count")],
        ),
        _row("Artifact", "Weights", vget("weights_size"), [_size(s) for s in vget("weights_size")]),
        _row("Intake", "Modality", [m.modality.label for m in models]),
        _row("Intake", "Domain", [m.domain.label for m in models]),
        _row(
            "Intake",
            "Input schema",
            vget("input_schema"),
            [", ".join(f"{k}: {val}" for k, val in (s or {}).items()) or "—" for s in vget("input_schema")],
        ),
        _row("Result", "Result kind", [m.result_kind.label for m in models]),
        _row(
            "Result",
            "Labels",
            vget("labels"),
            [", ".join(str(label) for label in (ls or [])) or "—" for ls in vget("labels")],
        ),
        _row("About", "Team", [m.team.name for m in models]),
        _row("About", "Licence", [m.license for m in models]),
        _row("About", "Latest version", [f"v{v.version}" if v else "—" for v in versions]),
    ]
    lineage = []
    for v in versions:
        ref = refs.get(v.pk) if v is not None else None
        parts = []
        if ref is not None and ref.base_title:
            parts.append(f"fine-tuned from {ref.base_title}")
        if ref is not None and ref.dataset_title:
            parts.append(f"on {ref.dataset_title}")
        lineage.append("; ".join(parts) or "trained outside the catalogue")
    cmp.rows.append(_row("About", "Lineage", lineage))

    # Metrics: one row per (dataset, metric); rows that two or more models share come first.
    table: dict[tuple[str, str], list[float | None]] = {}
    for i, v in enumerate(versions):
        for metric in v.metrics.all() if v is not None else []:
            key = (metric.evaluation_dataset, metric.name)
            table.setdefault(key, [None] * len(versions))[i] = metric.value
    keys = sorted(table, key=lambda k: (-sum(x is not None for x in table[k]), k))
    for dataset, name in keys:
        values = table[(dataset, name)]
        present = [x for x in values if x is not None]
        lower = any(t in name for t in LOWER_IS_BETTER)
        best = (min(present) if lower else max(present)) if len(present) > 1 else None
        cells = [
            Cell(x, "—" if x is None else f"{x:.3f}", best=best is not None and x is not None and x == best)
            for x in values
        ]
        cmp.metric_rows.append(CompareRow(dataset, name, cells, differs=len(present) > 1 and len(set(present)) > 1))

    # Variants: per name, "size · p95" of each model's served ones.
    names: list[str] = []
    per: list[dict[str, Variant]] = []
    for v in versions:
        served = {x.name: x for x in (v.variants.all() if v is not None else []) if x.status == VariantStatus.SERVED}
        per.append(served)
        names += [n for n in served if n not in names]
    for name in sorted(names):
        cells = []
        p95s = [x for x in (p[name].latency_p95_ms for p in per if name in p) if x is not None]
        fastest = min(p95s) if len(p95s) > 1 else None
        for p in per:
            x = p.get(name)
            if x is None:
                cells.append(Cell(None, "—"))
                continue
            lat = f" · p95 {x.latency_p95_ms:.2f} ms" if x.latency_p95_ms is not None else ""
            cells.append(
                Cell(
                    x.latency_p95_ms, f"{_size(x.size)}{lat}", best=fastest is not None and x.latency_p95_ms == fastest
                )
            )
        cmp.variant_rows.append(CompareRow("Variants", name, cells, differs=len({c.display for c in cells}) > 1))
    return cmp, []
