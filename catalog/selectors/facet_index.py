"""An in-memory, per-process column store of what search filters and facets
read: one numpy array per column, one entry per registered model.

Exact facet counts over tens of thousands of matches cost PostgreSQL 50–90 ms
per query here (a scan plus four aggregations); masks and ``bincount`` over
these arrays cost well under a millisecond. The arrays are reloaded when the
catalogue's generation token (``CatalogState``, changed by every write — see
``catalog.signals``) differs from the one they were built at, so every process
answers from current data at the price of one indexed one-row query.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from catalog.models import CatalogState, RegisteredModel, TaxonomyNode, Team, Variant, VariantStatus
from catalog.taxonomy import TAXONOMIES
from discovery.selectors import VectorIndex, vector_index_load


@dataclass
class Codes:
    """String column ↔ small-int codes."""

    index: dict[str, int] = field(default_factory=dict)

    def code(self, value: str) -> int:
        return self.index.setdefault(value, len(self.index))

    def get(self, value: str) -> int:
        return self.index.get(value, -1)


@dataclass
class FacetIndex:
    token: str
    ids: np.ndarray  # sorted model ids
    internal: np.ndarray  # bool
    team: np.ndarray
    modality: np.ndarray
    result: np.ndarray
    domain: np.ndarray
    framework: np.ndarray
    framework_codes: Codes
    precision: np.ndarray  # float, nan when unmeasured
    created: np.ndarray  # int64 microseconds
    # Served variants of each model's latest version.
    variant_model: np.ndarray  # position in ``ids``
    variant_runtime: np.ndarray
    variant_precision: np.ndarray
    variant_hardware: np.ndarray
    variant_p95: np.ndarray
    variant_codes: Codes
    # The small tables a result list shows beside each model, by id.
    nodes: dict[str, dict[int, TaxonomyNode]] = field(default_factory=dict)
    node_rows: dict[str, list[tuple[int, str, str, str, int]]] = field(default_factory=dict)
    teams: dict[int, Team] = field(default_factory=dict)
    # False for deprecated and archived models: hidden from search by default.
    active: np.ndarray | None = None
    # Card facets: the licence code of each model, and (model position, tag code) pairs.
    license: np.ndarray | None = None
    license_codes: Codes = field(default_factory=Codes)
    tag_model: np.ndarray | None = None
    tag_code: np.ndarray | None = None
    tag_codes: Codes = field(default_factory=Codes)
    # Search embeddings, one row per entry of ``ids`` (discovery.selectors).
    vectors: VectorIndex | None = None
    # slug → position in ``ids``.
    slugs: dict[str, int] = field(default_factory=dict)
    # hash(name_key(name)) per position: a question that is a model's name.
    name_hash: np.ndarray | None = None
    # Ready JSON of list rows and detail answers, filled on first use and
    # dropped with this index when the generation token changes
    # (catalog.selectors.documents).
    documents: dict[str, dict[Any, Any]] = field(default_factory=dict)

    def positions(self, model_ids: list[int] | np.ndarray) -> np.ndarray:
        """Positions in ``ids`` of the given model ids (unknown ids dropped)."""
        wanted = np.asarray(model_ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, wanted)
        ok = pos < len(self.ids)
        ok[ok] = self.ids[pos[ok]] == wanted[ok]
        return pos[ok]


_lock = threading.Lock()
_current: FacetIndex | None = None


def _token() -> str:
    from catalog.selectors.live_state import known_token

    # Announced by PostgreSQL to this process's listener (catalog.selectors.live_state),
    # or read from the database.
    token = known_token() or CatalogState.objects.filter(pk=1).values_list("token", flat=True).first()
    if token is None:
        from catalog.signals import catalog_changed

        token = catalog_changed()
    return token


def name_key(name: str) -> str:
    """A name as compared with a question: case and spacing aside."""
    return " ".join(name.split()).casefold()


def facet_index() -> FacetIndex:
    """The index for the catalogue as it is now (reloaded if stale)."""
    global _current
    token = _token()
    index = _current
    if index is not None and index.token == token:
        return index
    with _lock:
        if _current is None or _current.token != token:
            # The token is read before the rows: a write in between leaves a
            # newer token behind, and the next call reloads again.
            _current = _load(token, _current)
        return _current


def current() -> FacetIndex | None:
    """The index this process holds now (None before the first search)."""
    return _current


def _load(token: str, previous: FacetIndex | None = None) -> FacetIndex:
    rows = list(
        RegisteredModel.objects.order_by("id").values_list(
            "id",
            "visibility",
            "team_id",
            "modality_id",
            "result_kind_id",
            "domain_id",
            "framework",
            "precision",
            "created_at",
            "latest_version_id",
            "lifecycle",
            "license",
            "tags",
            "slug",
            "name",
        )
    )
    n = len(rows)
    framework_codes = Codes()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    index = FacetIndex(
        token=token,
        ids=ids,
        internal=np.fromiter((r[1] == "internal" for r in rows), dtype=bool, count=n),
        team=np.fromiter((r[2] for r in rows), dtype=np.int64, count=n),
        modality=np.fromiter((r[3] for r in rows), dtype=np.int64, count=n),
        result=np.fromiter((r[4] for r in rows), dtype=np.int64, count=n),
        domain=np.fromiter((r[5] for r in rows), dtype=np.int64, count=n),
        framework=np.fromiter((framework_codes.code(r[6]) for r in rows), dtype=np.int32, count=n),
        framework_codes=framework_codes,
        precision=np.fromiter((np.nan if r[7] is None else r[7] for r in rows), dtype=np.float64, count=n),
        created=np.fromiter((int(r[8].timestamp() * 1e6) for r in rows), dtype=np.int64, count=n),
        variant_model=np.zeros(0, dtype=np.int64),
        variant_runtime=np.zeros(0, dtype=np.int32),
        variant_precision=np.zeros(0, dtype=np.int32),
        variant_hardware=np.zeros(0, dtype=np.int32),
        variant_p95=np.zeros(0, dtype=np.float64),
        variant_codes=Codes(),
    )
    index.slugs = {r[13]: i for i, r in enumerate(rows)}
    index.name_hash = np.fromiter((hash(name_key(r[14])) for r in rows), dtype=np.int64, count=n)
    index.active = np.fromiter((r[10] == "active" for r in rows), dtype=bool, count=n)
    index.license = np.fromiter((index.license_codes.code(r[11] or "") for r in rows), dtype=np.int32, count=n)
    pairs = [(i, index.tag_codes.code(str(t))) for i, r in enumerate(rows) for t in dict.fromkeys(r[12] or [])]
    index.tag_model = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
    index.tag_code = np.fromiter((p[1] for p in pairs), dtype=np.int32, count=len(pairs))
    latest = {r[9]: r[0] for r in rows if r[9] is not None}
    variants = [
        v
        for v in Variant.objects.filter(status=VariantStatus.SERVED).values_list(
            "version_id", "runtime", "precision", "hardware", "latency_p95_ms"
        )
        if v[0] in latest
    ]
    codes = index.variant_codes
    m = len(variants)
    index.variant_model = index.positions([latest[v[0]] for v in variants])
    index.variant_runtime = np.fromiter((codes.code(v[1]) for v in variants), dtype=np.int32, count=m)
    index.variant_precision = np.fromiter((codes.code(v[2]) for v in variants), dtype=np.int32, count=m)
    index.variant_hardware = np.fromiter((codes.code(v[3]) for v in variants), dtype=np.int32, count=m)
    index.variant_p95 = np.fromiter((np.nan if v[4] is None else v[4] for v in variants), dtype=np.float64, count=m)
    for kind, model in TAXONOMIES.items():
        nodes = {n.pk: n for n in model._default_manager.order_by("path")}
        for node in nodes.values():
            node.parent = nodes.get(node.parent_id)  # type: ignore[attr-defined]
        index.nodes[kind] = nodes
        index.node_rows[kind] = [(n.pk, n.path, n.slug, n.name, n.depth) for n in nodes.values()]
    index.teams = {t.pk: t for t in Team.objects.all()}
    index.vectors = vector_index_load(ids, previous.vectors if previous is not None else None)
    return index
