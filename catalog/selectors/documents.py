"""Ready JSON for the API's model list rows and model detail answers.

A page of 100 search results used to run the summary serializer 100 times
(~10 ms), and a model's detail answer cost 11 queries and a nested
serializer. Both are now JSON encoded once per model and catalogue generation
and kept on the in-memory facet index (``FacetIndex.documents``), so they are
dropped by the same generation token that reloads the index: every catalogue
write (``catalog.signals``) makes them unreachable in every process. A page is
then a join of ready byte strings.

What differs per request is left as a *slot* in the encoded document and
filled at answer time:

* ``url`` — absolute, from the request's scheme and host;
* a version's ``lineage`` — depends on the viewer (a private base model or
  another team's dataset is not named: the rule of
  ``catalog.selectors.lineage.lineage_summary``), computed from facts stored
  with the document, without a query;
* a variant's ``download_count`` — bumped by downloads with a bulk
  ``update()`` that does not change the generation token, so it is read
  again (one query, only when the model has variants): on every answer, or,
  in a process that listens (``catalog.selectors.live_state``), only after a
  download notification.

In listening processes a generation's first API answer also starts building
every model's detail document in the background (``DETAIL_PREBUILD_MAX``).

The output is byte-for-byte what ``ModelSummarySerializer`` /
``ModelDetailSerializer`` rendered by DRF's ``JSONRenderer`` give
(``tests/catalog/api/test_documents.py`` holds them to it).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rest_framework import serializers

from catalog.api.serializers import VariantSerializer
from catalog.models import Alias, Metric, ModelVersion, RegisteredModel, Variant

if TYPE_CHECKING:
    from catalog.selectors.facet_index import FacetIndex

log = logging.getLogger(__name__)
_DATETIME = serializers.DateTimeField()
# Marks a slot inside a document before encoding: a value no model can hold
# (a NUL is escaped by json.dumps, so the encoded marker is unambiguous).
_SLOT = "\x00slot:{}\x00"
_SLOT_ENCODED = re.compile(r'"\\u0000slot:([^"\\]+)\\u0000"')
# Detail documents kept per process and generation (rows: every model at most).
DETAIL_CACHE_MAX = 20_000
# Bases (scheme://host) whose rendered list rows are kept per generation.
ROW_BASES_MAX = 8


def json_bytes(data: Any) -> bytes:
    """What DRF's ``JSONRenderer`` writes for ``data`` (compact, unicode, no NaN)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    # JSONRenderer escapes these two for JavaScript's sake.
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def _datetime(value: Any) -> Any:
    return _DATETIME.to_representation(value) if value is not None else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass
class Encoded:
    """A JSON document split at its slots: ``parts[0] slot[0] parts[1] … parts[-1]``."""

    parts: list[bytes]
    slots: list[str]

    @classmethod
    def of(cls, data: Any) -> Encoded:
        pieces = _SLOT_ENCODED.split(json_bytes(data).decode())
        return cls(parts=[p.encode() for p in pieces[0::2]], slots=pieces[1::2])

    def render(self, values: dict[str, bytes]) -> bytes:
        out = [self.parts[0]]
        for slot, part in zip(self.slots, self.parts[1:], strict=True):
            out.append(values[slot])
            out.append(part)
        return b"".join(out)


def slot(name: str) -> str:
    return _SLOT.format(name)


# --- list rows -------------------------------------------------------------------------------


def _node(index: FacetIndex, kind: str, node_id: int) -> dict[str, str]:
    node = index.nodes[kind][node_id]
    return {"path": node.path, "label": node.label}


def summary_data(index: FacetIndex, m: RegisteredModel, metrics: Iterable[Metric]) -> dict[str, Any]:
    """``ModelSummarySerializer``'s fields for ``m`` (``url`` as a slot)."""
    v = m.latest_version
    latest = None
    if v is not None:
        latest = {
            "version": v.version,
            "family": v.family,
            "framework": v.framework,
            "parameter_count": v.parameter_count,
            "metrics": {x.name: x.value for x in metrics},
        }
    return {
        "slug": m.slug,
        "name": m.name,
        "summary": m.summary,
        "team": index.teams[m.team_id].slug,
        "visibility": m.visibility,
        "modality": _node(index, "modality", m.modality_id),
        "result": _node(index, "result", m.result_kind_id),
        "domain": _node(index, "domain", m.domain_id),
        "framework": m.framework,
        "precision": _float(m.precision),
        "coverage": _float(m.coverage),
        "latest_version": latest,
        "url": slot("url"),
        "created_at": _datetime(m.created_at),
    }


def model_url(base: bytes, slug: str) -> bytes:
    """The ``url`` slot's JSON: ``base`` is the request's ``scheme://host``."""
    return json_bytes(base.decode() + f"/api/v1/models/{slug}/")


def list_rows(index: FacetIndex, ids: list[int], base: str) -> list[bytes]:
    """The JSON of each model of ``ids`` (in that order) as the list shows it.

    ``ids`` must be visible to the viewer already (the search's mask); rows
    missing from the generation's cache are loaded in two queries."""
    cache: dict[int, tuple[Encoded, str]] = index.documents.setdefault("row", {})
    missing = [i for i in ids if i not in cache]
    if missing:
        from catalog.selectors.search import LIST_DEFERRED

        models = list(
            RegisteredModel.objects.filter(pk__in=missing).select_related("latest_version").defer(*LIST_DEFERRED)
        )
        by_version: dict[int, list[Metric]] = {}
        latest = [m.latest_version_id for m in models if m.latest_version_id is not None]
        if latest:
            for metric in Metric.objects.filter(version_id__in=latest):
                by_version.setdefault(metric.version_id, []).append(metric)
        for m in models:
            data = summary_data(index, m, by_version.get(m.latest_version_id or 0, []))
            cache[m.pk] = (Encoded.of(data), m.slug)
    # Rows rendered for this base (scheme://host), kept per generation too: a
    # base is one of the few names the server answers to (ALLOWED_HOSTS).
    by_base: dict[str, dict[int, bytes]] = index.documents.setdefault("row_bytes", {})
    rendered = by_base.get(base)
    if rendered is None:
        if len(by_base) >= ROW_BASES_MAX:
            by_base.clear()
        rendered = by_base[base] = {}
    prefix = base.encode()
    out = []
    for i in ids:
        row = rendered.get(i)
        if row is None:
            entry = cache.get(i)
            if entry is None:  # a model deleted since the index was built is left out
                continue
            encoded, slug = entry
            row = rendered[i] = encoded.render({"url": model_url(prefix, slug)})
        out.append(row)
    return out


# --- model detail -----------------------------------------------------------------------------


@dataclass
class LineageFacts:
    """What a version's ``lineage`` shows to any viewer, before the visibility rule."""

    base_model_id: int | None = None
    base_slug: str = ""
    base_version: int = 0
    base_internal: bool = False
    base_team_id: int = 0
    dataset_id: int | None = None
    dataset_sha256: str = ""
    dataset_rows: int = 0
    dataset_team_id: int = 0

    def render(self, viewer: Viewer) -> dict[str, Any]:
        base_out: dict[str, Any] | None = None
        if self.base_model_id is not None:
            visible = viewer.superuser or self.base_internal or self.base_team_id in viewer.team_ids
            base_out = (
                {"model": self.base_slug, "version": self.base_version, "private": False}
                if visible
                else {"model": None, "version": None, "private": True}
            )
        dataset_out: dict[str, Any] | None = None
        if self.dataset_id is not None:
            shown = viewer.superuser or self.dataset_team_id in viewer.team_ids
            dataset_out = {
                "id": self.dataset_id if shown else None,
                "sha256": self.dataset_sha256 if shown else None,
                "rows": self.dataset_rows,
            }
        return {"base": base_out, "dataset_version": dataset_out}


@dataclass(frozen=True)
class Viewer:
    """Who reads: what the visibility rules need to know (``visibility_q``)."""

    superuser: bool = False
    team_ids: frozenset[int] = frozenset()

    @classmethod
    def of(cls, user: Any) -> Viewer:
        if user is None or not user.is_authenticated:
            return cls()
        if user.is_superuser:
            return cls(superuser=True)
        return cls(team_ids=frozenset(user.teams.values_list("id", flat=True)))

    def sees(self, index: FacetIndex, position: int) -> bool:
        return self.superuser or bool(index.internal[position]) or int(index.team[position]) in self.team_ids


@dataclass
class DetailDocument:
    encoded: Encoded
    slug: str
    lineage: dict[str, LineageFacts] = field(default_factory=dict)  # slot → facts
    variants: dict[str, int] = field(default_factory=dict)  # slot → variant id
    # The download counters as last read, and the listener's downloads
    # generation they were read at (None: read them on every answer).
    counts: dict[str, bytes] = field(default_factory=dict)
    counts_at: int | None = None


# The serializer's fields, in its order (the documents must match its bytes);
# the download counter is a per-answer slot.
_VARIANT_FIELDS = tuple(f for f in VariantSerializer.Meta.fields if f != "download_count")


def _variant_data(v: Variant, doc: DetailDocument) -> dict[str, Any]:
    data: dict[str, Any] = {name: getattr(v, name) for name in _VARIANT_FIELDS}
    data["size"] = _int(v.size)
    data["opset"] = _int(v.opset)
    data["latency_p50_ms"] = _float(v.latency_p50_ms)
    data["latency_p95_ms"] = _float(v.latency_p95_ms)
    name = f"dl{v.pk}"
    doc.variants[name] = v.pk
    data["download_count"] = slot(name)
    return data


def _details_build(
    index: FacetIndex, model_ids: list[int], rows: dict[int, tuple[Encoded, str]] | None = None
) -> dict[int, tuple[DetailDocument, dict[str, bytes]]]:
    """The documents of ``model_ids`` (absent models left out), each with the
    download counters it was built with: four queries for any number. With
    ``rows``, each model's list row (``list_rows``' cache entry) is added to it
    from the same rows, unless one is there already."""
    # The model rows come with their versions; models without versions are read alone.
    versions: dict[int, list[ModelVersion]] = {}
    for v in ModelVersion.objects.filter(registered_model_id__in=model_ids).select_related(
        "registered_model", "base_version__registered_model", "dataset_version__dataset"
    ):
        versions.setdefault(v.registered_model_id, []).append(v)
    models: dict[int, RegisteredModel] = {}
    for model_id, group in versions.items():
        model = group[0].registered_model
        by_pk = {v.pk: v for v in group}
        if model.latest_version_id in by_pk:
            model.latest_version = by_pk[model.latest_version_id]
        models[model_id] = model
    alone = [i for i in model_ids if i not in versions]
    if alone:
        models.update((m.pk, m) for m in RegisteredModel.objects.filter(pk__in=alone).select_related("latest_version"))
    version_ids = [v.pk for group in versions.values() for v in group]
    metrics: dict[int, list[Metric]] = {}
    variants: dict[int, list[Variant]] = {}
    aliases: dict[int, list[Alias]] = {}
    if version_ids:
        for metric in Metric.objects.filter(version_id__in=version_ids):
            metrics.setdefault(metric.version_id, []).append(metric)
        for variant in Variant.objects.filter(version_id__in=version_ids):
            variants.setdefault(variant.version_id, []).append(variant)
        for alias in Alias.objects.filter(registered_model_id__in=list(versions)):
            aliases.setdefault(alias.registered_model_id, []).append(alias)
    if rows is not None:
        for model_id, model in models.items():
            if model_id not in rows:
                latest = metrics.get(model.latest_version_id, []) if model.latest_version_id is not None else []
                rows.setdefault(model_id, (Encoded.of(summary_data(index, model, latest)), model.slug))
    return {
        model_id: _detail_document(
            index, model, versions.get(model_id, []), metrics, variants, aliases.get(model_id, [])
        )
        for model_id, model in models.items()
    }


def _detail_document(
    index: FacetIndex,
    model: RegisteredModel,
    versions: list[ModelVersion],
    metrics: dict[int, list[Metric]],
    variants: dict[int, list[Variant]],
    aliases: list[Alias],
) -> tuple[DetailDocument, dict[str, bytes]]:
    number = {v.pk: v.version for v in versions}
    doc = DetailDocument(encoded=Encoded([], []), slug=model.slug)
    data = summary_data(index, model, metrics.get(model.latest_version_id or 0, []))
    version_rows = []
    for v in versions:
        facts = LineageFacts()
        base = v.base_version
        if base is not None:
            facts.base_model_id = base.registered_model_id
            facts.base_slug = base.registered_model.slug
            facts.base_version = base.version
            facts.base_internal = base.registered_model.visibility == "internal"
            facts.base_team_id = base.registered_model.team_id
        dv = v.dataset_version
        if dv is not None:
            facts.dataset_id = dv.pk
            facts.dataset_sha256 = dv.sha256
            facts.dataset_rows = dv.rows
            facts.dataset_team_id = dv.dataset.team_id
        lineage_slot = f"lineage{v.pk}"
        doc.lineage[lineage_slot] = facts
        version_rows.append(
            {
                "id": v.pk,
                "version": v.version,
                "status": v.status,
                "family": v.family,
                "framework": v.framework,
                "parameter_count": _int(v.parameter_count),
                "weights_sha256": v.weights_sha256,
                "weights_size": _int(v.weights_size),
                "files": v.files,
                "hyperparameters": v.hyperparameters,
                "input_schema": v.input_schema,
                "output_schema": v.output_schema,
                "labels": v.labels,
                "metrics": [
                    {
                        "name": m.name,
                        "value": m.value,
                        "evaluation_dataset": m.evaluation_dataset,
                        "split": m.split,
                        "samples": m.sample_count,
                    }
                    for m in metrics.get(v.pk, [])
                ],
                "variants": [_variant_data(x, doc) for x in variants.get(v.pk, [])],
                "lineage": slot(lineage_slot),
                "code_version": v.code_version,
                "lifecycle": v.lifecycle,
                "lifecycle_reason": v.lifecycle_reason,
                "intake": v.intake,
                "created_at": _datetime(v.created_at),
            }
        )
    data.update(
        {
            "description": model.description,
            "lifecycle": model.lifecycle,
            "lifecycle_reason": model.lifecycle_reason,
            "license": model.license,
            "tags": model.tags,
            "card": model.card,
            "versions": version_rows,
            "aliases": {a.name: number[a.version_id] for a in aliases if a.version_id in number},
        }
    )
    doc.encoded = Encoded.of(data)
    counts = {f"dl{x.pk}": str(x.download_count).encode() for v in versions for x in variants.get(v.pk, [])}
    return doc, counts


def _detail_build(index: FacetIndex, model_id: int) -> tuple[DetailDocument, dict[str, bytes]] | None:
    return _details_build(index, [model_id]).get(model_id)


# Long-lived web processes (those that listen for the generation token,
# catalog.selectors.live_state) build every model's detail document in the
# background from a generation's first API answer (search or detail), for
# catalogues up to this size (~2.5 KB a model; ~3 s of CPU per process and
# generation at 10,000 models, aborted at the next chunk when a newer
# generation arrives); larger catalogues build each document on its first
# request.
DETAIL_PREBUILD_MAX = 20_000
DETAIL_PREBUILD_CHUNK = 500
_prebuild_lock = threading.Lock()


def details_prebuild_once(index: FacetIndex) -> None:
    """Start the generation's prebuild in this process if it has not started
    (the API's answers call this: a process that serves API clients)."""
    if "prebuild" in index.documents:
        return
    with _prebuild_lock:
        if "prebuild" not in index.documents:
            index.documents["prebuild"] = {}
            details_prebuild(index)


def details_prebuild(index: FacetIndex) -> threading.Thread | None:
    """Start building ``index``'s detail documents in a background thread."""
    from catalog.selectors import live_state

    if len(index.ids) > DETAIL_PREBUILD_MAX or not live_state.enabled():
        return None
    thread = threading.Thread(target=_prebuild, args=(index,), name="catalog-detail-prebuild", daemon=True)
    thread.start()
    return thread


def _prebuild(index: FacetIndex) -> None:
    from django.db import connection

    from catalog.selectors import facet_index as fi
    from catalog.selectors.live_state import downloads_generation

    cache: dict[int, DetailDocument | None] = index.documents.setdefault("detail", {})
    # The list rows come from the same queries: a search whose matches no
    # earlier page showed (a word new to this generation) finds its rows ready.
    rows: dict[int, tuple[Encoded, str]] = index.documents.setdefault("row", {})
    try:
        ids = [int(i) for i in index.ids]
        for start in range(0, len(ids), DETAIL_PREBUILD_CHUNK):
            if fi.current() is not index:
                return  # a newer generation: its own prebuild runs
            chunk = [i for i in ids[start : start + DETAIL_PREBUILD_CHUNK] if i not in cache]
            generation = downloads_generation()
            for model_id, (doc, counts) in _details_build(index, chunk, rows).items():
                doc.counts, doc.counts_at = counts, generation
                cache.setdefault(model_id, doc)  # a request may have built it meanwhile
        log.info("detail documents prebuilt: %d models", len(ids))
    except Exception:  # noqa: BLE001 - requests build what is missing
        log.exception("detail documents prebuild failed")
    finally:
        connection.close()


def model_detail_json(index: FacetIndex, *, slug: str, viewer: Viewer, base: str) -> bytes | None:
    """The model detail answer for ``viewer`` (None: no such model visible to it)."""
    position = index.slugs.get(slug)
    if position is None or not viewer.sees(index, position):
        return None
    model_id = int(index.ids[position])
    from catalog.selectors.live_state import downloads_generation

    details_prebuild_once(index)
    cache: dict[int, DetailDocument | None] = index.documents.setdefault("detail", {})
    generation = downloads_generation()  # read before the counters, so a bump in between re-reads
    if model_id in cache:
        doc = cache[model_id]
        if doc is not None and doc.variants and (generation is None or doc.counts_at != generation):
            # Bumped by downloads without a new catalogue generation: read again.
            fresh = Variant.objects.filter(pk__in=doc.variants.values()).values_list("pk", "download_count")
            counts = dict(fresh)
            doc.counts = {name: str(counts.get(pk, 0)).encode() for name, pk in doc.variants.items()}
            doc.counts_at = generation
    else:
        built = _detail_build(index, model_id)
        doc = built[0] if built is not None else None
        if built is not None:
            doc = built[0]
            doc.counts, doc.counts_at = built[1], generation
        if len(cache) >= DETAIL_CACHE_MAX:
            cache.clear()
        cache[model_id] = doc
    if doc is None:
        return None
    values: dict[str, bytes] = dict(doc.counts)
    values["url"] = model_url(base.encode(), doc.slug)
    for name, facts in doc.lineage.items():
        values[name] = json_bytes(facts.render(viewer))
    return doc.encoded.render(values)
