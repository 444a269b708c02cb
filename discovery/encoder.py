"""The catalogue's own sentence encoder for search: all-MiniLM-L6-v2 as a
compiled int8 ONNX graph, run with onnxruntime and Hugging Face ``tokenizers``
only — no torch in the process that encodes queries.

The graph is the one ``runners.compile`` builds for the ``sentence-encoder``
family: attention-masked mean pooling and L2 normalisation are inside it (the
same pooling as ``runners.families.sentence_encoder``); the output is
normalised again here, since int8 can move the norm by a hair.

Building a graph (``build_int8``) needs torch and runs in a worker, a
management command or a test, never in a web request.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DIM = 384
MAX_TOKENS = 256
# Files an encoder directory holds.
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
INFO_FILE = "encoder.json"


@dataclass(frozen=True)
class EncoderInfo:
    key: str  # recorded beside every stored vector, e.g. "variant:1a2b…" or "local:3c4d…"
    source: str  # a sentence for people: where the graph comes from
    directory: Path


class Encoder:
    """Tokenise, run the graph, normalise; thread-safe (onnxruntime sessions are)."""

    def __init__(self, info: EncoderInfo, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.info = info
        tokenizer = Tokenizer.from_file(str(info.directory / TOKENIZER_FILE))
        # The packaged tokenizer.json pads to a fixed 128; the encoder's recipe
        # is "pad to the longest, truncate at max_seq_length (256)".
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(info.directory / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 vectors, shape (len(texts), 384)."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        # Similar lengths together: less padding per batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in chunk])
            feed: dict[str, Any] = {
                "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
            }
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
            vectors = self._session.run(None, feed)[0].astype(np.float32)
            out[chunk] = vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


# --- int8 storage -----------------------------------------------------------------------


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8: ``vectors ≈ q * scale[:, None]``."""
    scale = np.maximum(np.abs(vectors).max(axis=1), 1e-12) / 127.0
    q = np.clip(np.rint(vectors / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def dequantize(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * scale.reshape(-1, 1).astype(np.float32)


# --- where the graph comes from -------------------------------------------------------------


def _write_info(directory: Path, key: str, source: str) -> EncoderInfo:
    (directory / INFO_FILE).write_text(json.dumps({"key": key, "source": source}))
    return EncoderInfo(key=key, source=source, directory=directory)


def read_info(directory: Path) -> EncoderInfo | None:
    try:
        data = json.loads((directory / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not (directory / MODEL_FILE).is_file() or not (directory / TOKENIZER_FILE).is_file():
        return None
    return EncoderInfo(key=data["key"], source=data["source"], directory=directory)


def _staging(directory: Path) -> Path:
    """A private staging folder beside ``directory``: several processes (gunicorn
    workers warming up together) may build the same encoder at once."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=directory.name + ".partial-", dir=directory.parent))


def _publish(tmp: Path, directory: Path) -> None:
    """Move a finished staging folder into place; if another process got there
    first with a complete encoder, keep theirs and drop ours."""
    if read_info(directory) is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    shutil.rmtree(directory, ignore_errors=True)
    try:
        tmp.rename(directory)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if read_info(directory) is None:
            raise


def unpack_bundle(bundle: Path, directory: Path, key: str, source: str) -> EncoderInfo:
    """Take ``model.onnx`` and ``tokenizer.json`` out of a variant bundle (only
    those two regular members, by exact name — nothing else is extracted)."""
    tmp = _staging(directory)
    with tarfile.open(bundle) as tar:
        for name in (MODEL_FILE, TOKENIZER_FILE):
            member = tar.getmember(name)
            if not member.isfile():
                raise ValueError(f"{name} in {bundle} is not a regular file")
            src = tar.extractfile(member)
            assert src is not None
            with src, open(tmp / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
    _write_info(tmp, key, source)
    _publish(tmp, directory)
    return EncoderInfo(key=key, source=source, directory=directory)


def weights_fingerprint(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ("model.safetensors", TOKENIZER_FILE, "config.json"):
        digest.update((model_dir / name).read_bytes())
    return digest.hexdigest()[:16]


def build_int8(model_dir: Path, directory: Path) -> EncoderInfo:
    """Export the encoder with the compile runner's own code (``export_onnx``,
    ``quantize_int8`` with its plans, ``parity_check`` on cosine ≥ 0.99) and
    keep the int8 graph that passes. Needs torch."""
    from runners.compile import (
        QUANT_PLANS,
        SPECS,
        _text_batches,
        export_onnx,
        onnx_outputs,
        parity_check,
        quantize_int8,
        reference_outputs,
    )

    spec = next(s for s in SPECS if s.name == "onnx-int8")
    fingerprint = weights_fingerprint(model_dir)
    tmp = _staging(directory)
    fp32 = tmp / "model-fp32.onnx"
    export_onnx("sentence-encoder", model_dir, fp32)
    texts = [f"sample sentence number {i} about models, tickets, images and tumours" for i in range(32)]
    batches = _text_batches(model_dir, texts, MAX_TOKENS)
    reference = reference_outputs("sentence-encoder", model_dir, batches)
    for plan, keep in QUANT_PLANS:  # noqa: B007 - the plan that passed is recorded below
        quantize_int8(fp32, tmp / MODEL_FILE, keep)
        parity = parity_check(reference, onnx_outputs(tmp / MODEL_FILE, batches), spec, None, classifier=False)
        if parity.passed:
            break
    else:
        raise RuntimeError(f"no int8 plan of the search encoder passed parity: {parity.reason}")
    fp32.unlink()
    shutil.copyfile(model_dir / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
    _write_info(tmp, f"local:{fingerprint}", f"local int8 build ({plan}) of {model_dir.name} weights {fingerprint}")
    _publish(tmp, directory)
    info = read_info(directory)
    assert info is not None
    return info


_lock = threading.Lock()
_loaded: dict[str, Encoder] = {}


def encoder_load(info: EncoderInfo) -> Encoder:
    """One session per graph per process."""
    encoder = _loaded.get(info.key)
    if encoder is None:
        with _lock:
            encoder = _loaded.get(info.key)
            if encoder is None:
                encoder = _loaded[info.key] = Encoder(info)
    return encoder
