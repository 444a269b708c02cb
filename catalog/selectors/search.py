"""``model_search``: the one search the web UI and the API share."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    F,
    FloatField,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.expressions import RawSQL

from catalog.models import RegisteredModel, Team, Variant, VariantStatus
from catalog.selectors.taxonomy import TreeNode, taxonomy_node_get, taxonomy_tree
from catalog.selectors.visibility import visibility_q
from catalog.taxonomy import MODEL_FIELD, TAXONOMIES

SORTS = ("relevance", "newest", "precision")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class SearchParams:
    q: str = ""
    modality: str = ""
    result: str = ""
    domain: str = ""
    team: str = ""
    framework: str = ""
    min_precision: float | None = None
    runtime: str = ""
    precision: str = ""
    hardware: str = ""
    max_p95_ms: float | None = None
    sort: str = "relevance"

    def active_filters(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", None) and k != "sort"}


@dataclass
class SearchResult:
    params: SearchParams
    queryset: QuerySet[RegisteredModel]
    total: int
    facets: dict[str, list[TreeNode]] = field(default_factory=dict)
    team_counts: list[tuple[str, str, int]] = field(default_factory=list)

    def page(self, number: int, size: int) -> list[RegisteredModel]:
        start = (max(number, 1) - 1) * size
        return list(self.queryset[start : start + size])


def _terms(q: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(q)][:12]


def _postgres_tsquery(terms: list[str]) -> str:
    # Every term must match; a prefix match keeps the live search useful while
    # a word is still being typed. Terms are \w+ only, so no tsquery syntax leaks in.
    return " & ".join(f"{t}:*" for t in terms)


def _apply_text(qs: QuerySet[RegisteredModel], q: str) -> tuple[QuerySet[RegisteredModel], bool]:
    terms = _terms(q)
    if not terms:
        return qs, False
    if connection.vendor == "postgresql":
        tsquery = _postgres_tsquery(terms)
        match = RawSQL(
            "catalog_registeredmodel.search_vector @@ to_tsquery('english', %s)",
            [tsquery],
            output_field=BooleanField(),
        )
        rank = RawSQL(
            "ts_rank_cd(catalog_registeredmodel.search_vector, to_tsquery('english', %s))",
            [tsquery],
            output_field=FloatField(),
        )
        return qs.filter(match).annotate(rank=rank), True
    # Portable fallback: every term in name, summary or the search document;
    # a hit in the name weighs most, as the A/B/C weights do on PostgreSQL.
    rank_parts: Any = Value(0)
    for term in terms:
        qs = qs.filter(Q(name__icontains=term) | Q(summary__icontains=term) | Q(search_document__icontains=term))
        rank_parts = rank_parts + Case(
            When(name__icontains=term, then=Value(3)),
            When(summary__icontains=term, then=Value(2)),
            default=Value(1),
            output_field=IntegerField(),
        )
    return qs.annotate(rank=rank_parts), True


def _apply_variant_filters(qs: QuerySet[RegisteredModel], p: SearchParams) -> QuerySet[RegisteredModel]:
    if not (p.runtime or p.precision or p.hardware or p.max_p95_ms is not None):
        return qs
    # One served variant of the latest version must meet every bound at once.
    variants = Variant.objects.filter(version=OuterRef("latest_version_id"), status=VariantStatus.SERVED)
    if p.runtime:
        variants = variants.filter(runtime=p.runtime)
    if p.precision:
        variants = variants.filter(precision=p.precision)
    if p.hardware:
        variants = variants.filter(hardware=p.hardware)
    if p.max_p95_ms is not None:
        variants = variants.filter(latency_p95_ms__lte=p.max_p95_ms)
    return qs.filter(Exists(variants))


def model_search(*, user: Any, params: SearchParams, with_facets: bool = True) -> SearchResult:
    """Search the models ``user`` may see.

    Raises:
        UnknownTaxonomyNode: a tree filter names no node.
    """
    p = params
    qs = RegisteredModel.objects.filter(visibility_q(user))
    selected: dict[str, str] = {}
    for kind in TAXONOMIES:
        path = getattr(p, kind).strip("/")
        if path:
            node = taxonomy_node_get(kind=kind, path=path)
            selected[kind] = node.path
            subtree = TAXONOMIES[kind]._default_manager.filter(TAXONOMIES[kind].subtree_q(node.path))
            qs = qs.filter(**{f"{MODEL_FIELD[kind]}_id__in": subtree.values("pk")})
    if p.team:
        qs = qs.filter(team__slug=p.team)
    if p.framework:
        qs = qs.filter(framework=p.framework)
    if p.min_precision is not None:
        qs = qs.filter(precision__gte=p.min_precision)
    qs = _apply_variant_filters(qs, p)
    qs, ranked = _apply_text(qs, p.q)

    facets: dict[str, list[TreeNode]] = {}
    team_counts: list[tuple[str, str, int]] = []
    if with_facets:
        own = _facet_counts(qs)
        total = sum(own["modality"].values())
        for kind in TAXONOMIES:
            facets[kind] = taxonomy_tree(kind=kind, own_counts=own[kind], selected=selected.get(kind, ""))
        teams = dict(Team.objects.values_list("id", "slug"))
        names = dict(Team.objects.values_list("id", "name"))
        team_counts = sorted(
            ((teams[i], names[i], n) for i, n in own["team"].items() if i in teams),
            key=lambda t: (-t[2], t[0]),
        )
    else:
        total = qs.count()

    sort = p.sort if p.sort in SORTS else "relevance"
    order: list[Any]
    if sort == "relevance" and ranked:
        order = [F("rank").desc(), F("precision").desc(nulls_last=True), "-id"]
    elif sort == "precision":
        order = [F("precision").desc(nulls_last=True), "-id"]
    else:
        order = ["-created_at", "-id"]
    qs = qs.select_related("team", "modality", "result_kind", "domain", "latest_version").order_by(*order)
    return SearchResult(params=p, queryset=qs, total=total, facets=facets, team_counts=team_counts)


def _facet_counts(qs: QuerySet[RegisteredModel]) -> dict[str, dict[int, int]]:
    """Models per node (not yet rolled up) for each tree, and per team."""
    columns = {"modality": "modality_id", "result": "result_kind_id", "domain": "domain_id", "team": "team_id"}
    base = qs.order_by().values(*columns.values())
    counts: dict[str, dict[int, int]] = {k: {} for k in columns}
    if connection.vendor == "postgresql":
        # One scan of the filtered rows for all four facets.
        sql, params = base.query.sql_with_params()
        cols = list(columns.values())
        grouping = ", ".join(f"({c})" for c in cols)
        select = ", ".join(cols)
        flags = ", ".join(f"GROUPING({c})" for c in cols)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {select}, {flags}, COUNT(*) FROM ({sql}) AS f GROUP BY GROUPING SETS ({grouping})",
                params,
            )
            for row in cursor.fetchall():
                values, grouped_out, n = row[:4], row[4:8], row[8]
                for kind, value, out in zip(columns, values, grouped_out, strict=True):
                    if not out:
                        counts[kind][value] = n
        return counts
    for kind, column in columns.items():
        counts[kind] = dict(base.values_list(column).annotate(n=Count("id")).values_list(column, "n"))
    return counts
