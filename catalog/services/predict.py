"""Answering a typed sentence with a model's served ONNX variant, in-process.

A small LRU pool of onnxruntime sessions (``PREDICT_POOL_SIZE``, default 4)
keyed by the variant bundle's sha256: a bundle is unpacked once under
``VAR_DIR/predict`` (only ``model.onnx`` and ``tokenizer.json``, by exact name —
``discovery.encoder.unpack_bundle``), loaded once per process, and the least
recently used session is dropped when the pool is full. No torch here: the
``tokenizers`` library and onnxruntime only.

* classifiers (``text-classifier``, ``sequence-classifier``): the graph outputs
  class probabilities (softmax inside); every label gets its score;
* sentence encoders: the graph outputs vectors (pooled and normalised inside, as
  for ``discovery.encoder``); the answer is the nearest of a few sample sentences
  by cosine.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from catalog.models import ModelVersion, RegisteredModel, Variant
from catalog.selectors.variants import variant_resolve

log = logging.getLogger(__name__)

CLASSIFIER_FAMILIES = ("text-classifier", "sequence-classifier")
ENCODER_FAMILIES = ("sentence-encoder",)
TEXT_FAMILIES = CLASSIFIER_FAMILIES + ENCODER_FAMILIES
# What an encoder's input is compared with on the "try it" box.
SAMPLE_SENTENCES = (
    "My invoice shows a charge twice, please refund me.",
    "The app crashes every time I open the settings page.",
    "How do I reset my password?",
    "I would like to cancel my subscription.",
    "The delivery arrived late and the box was damaged.",
    "What a beautiful sunny day at the beach.",
)


class PredictUnavailable(Exception):
    """The model (or the version asked for) has nothing that can answer text here."""


@dataclass
class Prediction:
    label: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class PredictResult:
    predictions: list[Prediction]
    version: ModelVersion
    variant: Variant
    latency_ms: float


@dataclass(frozen=True)
class InputLimits:
    max_inputs: int
    max_chars: int


def input_limits(version: ModelVersion) -> InputLimits:
    """Count and length limits for one request, from the version's input schema
    (``max_inputs`` / ``max_chars`` when it names them) within the site's caps."""
    schema = version.input_schema or {}
    cap_inputs = int(getattr(settings, "PREDICT_MAX_INPUTS", 16))
    cap_chars = int(getattr(settings, "PREDICT_MAX_CHARS", 2000))
    max_inputs = min(int(schema.get("max_inputs", cap_inputs) or cap_inputs), cap_inputs)
    max_chars = min(int(schema.get("max_chars", cap_chars) or cap_chars), cap_chars)
    return InputLimits(max_inputs=max(1, max_inputs), max_chars=max(1, max_chars))


def predictable(version: ModelVersion | None) -> bool:
    """Whether a version can answer typed text (a text family with labels, or an encoder)."""
    if version is None or version.family not in TEXT_FAMILIES:
        return False
    return version.family in ENCODER_FAMILIES or bool(version.labels)


def predict_variant(
    *, model: RegisteredModel, version: int | None = None, alias: str = ""
) -> tuple[ModelVersion, Variant]:
    """The version asked for (or production / latest) and its fastest served CPU ONNX variant."""
    resolution = variant_resolve(model=model, alias=alias, version=version, format="onnx", hardware="cpu")
    if resolution.version is None:
        raise PredictUnavailable(resolution.reason or f"{model.slug} has no such version.")
    if not predictable(resolution.version):
        raise PredictUnavailable(
            f"{model.slug} v{resolution.version.version} ({resolution.version.family}) does not take text here."
        )
    if resolution.variant is None or not resolution.variant.sha256:
        raise PredictUnavailable(
            f"{model.slug} v{resolution.version.version} has no served ONNX variant yet: compile it first."
        )
    return resolution.version, resolution.variant


# --- the session pool -------------------------------------------------------------------------


class _Graph:
    """A bundle's tokenizer and graph: text in, the graph's first output out."""

    def __init__(self, directory: Path, max_tokens: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tokenizer.enable_truncation(max_tokens)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(getattr(settings, "PREDICT_THREADS", 1))
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}

    def run(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        feed: dict[str, Any] = {
            "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
        }
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        return np.asarray(self._session.run(None, feed)[0], dtype=np.float32)


class SessionPool:
    """At most ``size`` loaded graphs, least recently used dropped first. Thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._lock = threading.Lock()
        self._items: OrderedDict[str, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def get(self, key: str, load: Any) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                return item
        item = load()  # outside the lock: a slow load must not stall other models
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                dropped, _ = self._items.popitem(last=False)
                log.info("predict pool: dropped %s", dropped[:16])
        return item

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_pool: SessionPool | None = None
_pool_lock = threading.Lock()


def session_pool() -> SessionPool:
    global _pool
    with _pool_lock:
        size = int(getattr(settings, "PREDICT_POOL_SIZE", 4))
        if _pool is None or _pool.size != max(1, size):
            _pool = SessionPool(size)
        return _pool


def _bundle_dir(variant: Variant) -> Path:
    """The variant's graph and tokenizer on local disk (unpacked once)."""
    from catalog.storage import artifact_local_path, artifact_open
    from discovery.encoder import read_info, unpack_bundle

    root = Path(settings.VAR_DIR) / "predict"
    directory = root / f"variant-{variant.sha256[:32]}"
    if read_info(directory) is not None:
        return directory
    root.mkdir(parents=True, exist_ok=True)
    key, source = f"variant:{variant.sha256[:16]}", f"{variant}"
    local = artifact_local_path(variant.sha256)
    if local is not None and local.is_file():
        unpack_bundle(local, directory, key, source)
        return directory
    with tempfile.NamedTemporaryFile(dir=root, suffix=".tar") as tmp, artifact_open(variant.sha256) as src:
        while chunk := src.read(1 << 20):
            tmp.write(chunk)
        tmp.flush()
        unpack_bundle(Path(tmp.name), directory, key, source)
    return directory


def _load(version: ModelVersion, variant: Variant) -> _Graph:
    directory = _bundle_dir(variant)
    max_tokens = int((version.input_schema or {}).get("max_tokens", 256))
    return _Graph(directory, max_tokens)


def runner_get(version: ModelVersion, variant: Variant) -> _Graph:
    return session_pool().get(variant.sha256, lambda: _load(version, variant))


def _rounded(value: float) -> float:
    return round(float(value), 6)


def predict_texts(*, version: ModelVersion, variant: Variant, texts: list[str]) -> PredictResult:
    """Run ``texts`` through the variant (loaded from the pool); latency covers the run only."""
    runner = runner_get(version, variant)
    started = time.perf_counter()
    predictions: list[Prediction] = []
    if version.family in ENCODER_FAMILIES:
        vectors = runner.run(list(texts) + list(SAMPLE_SENTENCES))
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        queries, samples = vectors[: len(texts)], vectors[len(texts) :]
        sims = queries @ samples.T
        for row in sims:
            best = int(row.argmax())
            predictions.append(
                Prediction(
                    label=SAMPLE_SENTENCES[best],
                    score=_rounded(row[best]),
                    scores={s: _rounded(v) for s, v in zip(SAMPLE_SENTENCES, row, strict=True)},
                )
            )
    else:
        labels = [str(label) for label in version.labels]
        probs = runner.run(list(texts))
        for row in probs:
            best = int(row.argmax())
            predictions.append(
                Prediction(
                    label=labels[best] if best < len(labels) else str(best),
                    score=_rounded(row[best]),
                    scores={label: _rounded(p) for label, p in zip(labels, row, strict=False)},
                )
            )
    latency_ms = (time.perf_counter() - started) * 1000.0
    return PredictResult(predictions=predictions, version=version, variant=variant, latency_ms=round(latency_ms, 3))


def model_predict(
    *, model: RegisteredModel, texts: list[str], version: int | None = None, alias: str = ""
) -> PredictResult:
    picked, variant = predict_variant(model=model, version=version, alias=alias)
    return predict_texts(version=picked, variant=variant, texts=texts)
