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

Sessions are built with the onnxruntime settings the compile timed the variant
with, read from the bundle's ``manifest.json`` (``session_options``, see
``runners.compile.session_options``), adjusted to this machine by
``serving_options``. Inputs run at their own lengths: tokenised without padding,
sorted by length into batches of ``PREDICT_BATCH_SIZE`` (default 32), each padded
to its longest (``runners.compile.length_batches``), and put back in their order.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
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


MANIFEST_FILE = "manifest.json"
GRAPH_OPTIMIZATION_LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")


def same_hardware(measured_on: Any) -> bool:
    """Whether a manifest's ``measured_on`` fingerprint is this kind of machine:
    the same CPU model and core count, and every ISA extension it names here."""
    if not isinstance(measured_on, dict) or not measured_on.get("cpu"):
        return False
    from runners.compile import cpu_info

    cpu, flags = cpu_info()
    isa = measured_on.get("isa") or []
    return (
        measured_on.get("cpu") == cpu
        and measured_on.get("cores") == os.cpu_count()
        and isinstance(isa, list)
        and set(map(str, isa)) <= flags
    )


def available_cores() -> int:
    """The cores this process may run on (its affinity, else the machine's)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def serving_options(manifest: dict[str, Any] | None, cores: int | None = None) -> dict[str, Any]:
    """The onnxruntime session settings to serve a variant with (CPU).

    The manifest's ``session_options`` (what the variant was timed with) are used
    as recorded when its ``measured_on`` fingerprint is this kind of machine
    (CPU model, cores, ISA); on other hardware the per-hardware choices
    (intra-op threads, spinning) are this machine's own (``session_options()``,
    the same rule the compile applies), and the graph optimisation level is kept.
    Threads are never more than the cores available here (a manifest written on
    a bigger machine, or a process pinned to fewer cores), and at most
    ``PREDICT_THREADS`` when that setting is given. No manifest, or none that
    records options: this machine's ``session_options()``."""
    from runners.compile import SPIN_MIN_CORES, session_options

    local = session_options("CPUExecutionProvider")
    cores = cores or available_cores()
    manifest = manifest or {}
    recorded = manifest.get("session_options")
    out = dict(local)
    if isinstance(recorded, dict):
        same = same_hardware(manifest.get("measured_on"))
        level = recorded.get("graph_optimization_level")
        if level in GRAPH_OPTIMIZATION_LEVELS:
            out["graph_optimization_level"] = level
        if same:
            for key in ("intra_op_num_threads", "inter_op_num_threads"):
                value = recorded.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                    out[key] = value
            if isinstance(recorded.get("allow_spinning"), bool):
                out["allow_spinning"] = recorded["allow_spinning"]
    cap = getattr(settings, "PREDICT_THREADS", None)
    limit = min(cores, int(cap)) if cap else cores
    out["intra_op_num_threads"] = max(1, min(int(out["intra_op_num_threads"]), limit))
    out["inter_op_num_threads"] = max(1, min(int(out["inter_op_num_threads"]), limit))
    # Busy-waiting threads only where there are cores to spare (the compile's rule).
    out["allow_spinning"] = bool(out["allow_spinning"]) and cores >= SPIN_MIN_CORES
    out["provider"] = "CPUExecutionProvider"
    return out


def _pad_id(tokenizer: Any) -> int:
    padding = tokenizer.padding  # the tokenizer.json's own padding settings, when it has some
    if padding and padding.get("pad_id") is not None:
        return int(padding["pad_id"])
    for token in ("[PAD]", "<pad>"):
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    return 0


class _Graph:
    """A bundle's tokenizer and graph: texts in, the graph's first output out
    (one row per text, in the texts' order), run at the texts' own lengths."""

    def __init__(self, directory: Path, max_tokens: int, options: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        from runners.compile import _session

        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.pad_id = _pad_id(tokenizer)
        # No padding here (a packaged tokenizer.json may pad to a fixed length):
        # each batch is padded to its own longest input.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_tokens)
        self._tokenizer = tokenizer
        self.options = options
        self._session = _session(directory / "model.onnx", "CPUExecutionProvider", options)
        self._inputs = {i.name for i in self._session.get_inputs()}

    def tokenize(self, texts: list[str]) -> Any:
        from runners.compile import Tokenized

        return Tokenized([list(e.ids) for e in self._tokenizer.encode_batch(list(texts))], self.pad_id)

    def run(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Sorted by length into batches (each padded to its longest), run, and
        put back in the texts' order."""
        from runners.compile import length_batches

        if not texts:
            raise ValueError("nothing to run")
        size = max(1, batch_size or int(getattr(settings, "PREDICT_BATCH_SIZE", 32)))
        tokenized = self.tokenize(texts)
        outputs = []
        for feed in length_batches(tokenized, size):
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
            outputs.append(np.asarray(self._session.run(None, feed)[0], dtype=np.float32))
        stacked = np.concatenate(outputs)
        result = np.empty_like(stacked)
        result[tokenized.order()] = stacked  # length_batches' order, undone
        return result


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


def _read_manifest(src: Any) -> dict[str, Any]:
    """``manifest.json`` from a bundle's stream (the first member: ``write_bundle``
    puts it there, so nothing else is read); {} when the bundle has none."""
    with tarfile.open(fileobj=src, mode="r|") as tar:
        for member in tar:
            if member.name == MANIFEST_FILE and member.isfile():
                body = tar.extractfile(member)
                if body is None:
                    return {}
                data = json.loads(body.read())
                return data if isinstance(data, dict) else {}
    return {}


def bundle_manifest(variant: Variant, directory: Path) -> dict[str, Any]:
    """The variant bundle's manifest, kept beside the unpacked graph (read from
    the bundle once: directories unpacked before it was kept get it then)."""
    from catalog.storage import artifact_open

    kept = directory / MANIFEST_FILE
    try:
        data = json.loads(kept.read_text())
        if isinstance(data, dict):
            return data
    except (OSError, ValueError):
        pass
    try:
        with artifact_open(variant.sha256) as src:
            data = _read_manifest(src)
    except (OSError, tarfile.TarError, ValueError) as exc:
        log.warning("predict: no manifest for %s (%s): default session settings", variant, exc)
        return {}
    tmp = directory / f".{MANIFEST_FILE}.{os.getpid()}.{threading.get_ident()}"
    tmp.write_text(json.dumps(data))
    tmp.replace(kept)  # atomic: another process may be writing the same file
    return data


def _load(version: ModelVersion, variant: Variant) -> _Graph:
    directory = _bundle_dir(variant)
    max_tokens = int((version.input_schema or {}).get("max_tokens", 256))
    return _Graph(directory, max_tokens, serving_options(bundle_manifest(variant, directory)))


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
