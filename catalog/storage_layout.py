"""Where to cut a file so that its large tensors are stored once.

``file_spans(path)`` returns the byte ranges of a file that hold tensor data
worth a blob of their own: the tensors of a safetensors file, the initializers
(and constant attributes) of an ONNX model, and — inside a bundle tar — the
same for its ``.onnx`` / ``.safetensors`` members and the whole data of any
other large member (tokenizer files). Identical tensors in two files (a
frozen encoder in a fine-tune and in its base, the same weights in an fp32
bundle and in an int8 bundle that kept them) then hash to the same blob.

Only the cut points come from here: the store keeps every byte between the
spans too, so a file is always reassembled byte for byte whatever this module
finds — a format it cannot parse just yields fewer spans (no error). Pure
Python, no Django, no onnx/protobuf import: the ONNX walk reads the protobuf
wire format directly.
"""

from __future__ import annotations

import json
import mmap
import struct
import tarfile
from pathlib import Path

# A tensor smaller than this stays in the file's "glue" blob: biases and
# layer norms are a few KB each and not worth a blob (and a lookup) each.
MIN_SPAN = 64 * 1024

Span = tuple[int, int]  # [start, end) in the file


class _WireError(ValueError):
    pass


def _varint(buf: mmap.mmap | bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: mmap.mmap | bytes | memoryview, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(field number, wire type, payload start, payload end) of one message's
    top-level fields; length-delimited payloads are skipped, not parsed."""
    out = []
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _WireError("field number 0")
        if wire == 0:
            _, after = _varint(buf, pos, end)
        elif wire == 1:
            after = pos + 8
        elif wire == 5:
            after = pos + 4
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            after = pos + length
        else:  # groups (3, 4) never occur in ONNX
            raise _WireError(f"wire type {wire}")
        if after > end:
            raise _WireError("field runs past its message")
        out.append((number, wire, pos, after))
        pos = after
    return out


# ONNX message field numbers (onnx/onnx.proto, stable since IR version 3).
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_ATTRIBUTE = 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
# float_data, int32_data, int64_data, raw_data, double_data, uint64_data
_TENSOR_DATA = frozenset({4, 5, 7, 9, 10, 11})


def _tensor(buf: mmap.mmap | bytes | memoryview, start: int, end: int, spans: list[Span], depth: int) -> None:
    for number, wire, a, b in _fields(buf, start, end):
        if wire == 2 and number in _TENSOR_DATA and b - a >= MIN_SPAN:
            spans.append((a, b))


def _sparse(buf: mmap.mmap | bytes | memoryview, start: int, end: int, spans: list[Span], depth: int) -> None:
    for number, wire, a, b in _fields(buf, start, end):
        if wire == 2 and number in (_SPARSE_VALUES, _SPARSE_INDICES):
            _tensor(buf, a, b, spans, depth + 1)


def _graph(buf: mmap.mmap | bytes | memoryview, start: int, end: int, spans: list[Span], depth: int) -> None:
    if depth > 32:
        raise _WireError("graphs nested too deeply")
    for number, wire, a, b in _fields(buf, start, end):
        if wire != 2:
            continue
        if number == _GRAPH_INITIALIZER:
            _tensor(buf, a, b, spans, depth + 1)
        elif number == _GRAPH_SPARSE_INITIALIZER:
            _sparse(buf, a, b, spans, depth + 1)
        elif number == _GRAPH_NODE:
            for n_number, n_wire, na, nb in _fields(buf, a, b):
                if n_wire == 2 and n_number == _NODE_ATTRIBUTE:
                    _attribute(buf, na, nb, spans, depth + 1)


def _attribute(buf: mmap.mmap | bytes | memoryview, start: int, end: int, spans: list[Span], depth: int) -> None:
    for number, wire, a, b in _fields(buf, start, end):
        if wire != 2:
            continue
        if number in (_ATTR_T, _ATTR_TENSORS):
            _tensor(buf, a, b, spans, depth + 1)
        elif number in (_ATTR_G, _ATTR_GRAPHS):
            _graph(buf, a, b, spans, depth + 1)
        elif number in (_ATTR_SPARSE, _ATTR_SPARSES):
            _sparse(buf, a, b, spans, depth + 1)


def onnx_spans(buf: mmap.mmap | bytes | memoryview, start: int = 0, end: int | None = None) -> list[Span]:
    """The tensor payloads of the ONNX model in ``buf[start:end]`` (offsets in
    ``buf``); [] when it is not a readable ModelProto."""
    end = len(buf) if end is None else end
    spans: list[Span] = []
    try:
        for number, wire, a, b in _fields(buf, start, end):
            if number == _MODEL_GRAPH and wire == 2:
                _graph(buf, a, b, spans, 0)
    except _WireError:
        return []
    return spans


def safetensors_spans(buf: mmap.mmap | bytes | memoryview, start: int = 0, end: int | None = None) -> list[Span]:
    """The tensors of the safetensors file in ``buf[start:end]``; [] when its
    header does not read as one."""
    end = len(buf) if end is None else end
    if end - start < 8:
        return []
    (header_len,) = struct.unpack("<Q", bytes(buf[start : start + 8]))
    data = start + 8 + header_len
    if header_len > 100_000_000 or data > end:
        return []
    try:
        header = json.loads(bytes(buf[start + 8 : data]))
    except ValueError:
        return []
    if not isinstance(header, dict):
        return []
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            a, b = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            return []
        if not 0 <= a <= b or data + b > end:
            return []
        if b - a >= MIN_SPAN:
            spans.append((data + a, data + b))
    return spans


def _member_spans(name: str, buf: mmap.mmap, start: int, end: int) -> list[Span]:
    if name.endswith(".onnx"):
        spans = onnx_spans(buf, start, end)
    elif name.endswith(".safetensors"):
        spans = safetensors_spans(buf, start, end)
    else:
        spans = []
    if not spans and end - start >= MIN_SPAN:
        # A tokenizer file, or a model this module cannot read: the member's
        # data whole (the same bytes as the version's own file of that name).
        spans = [(start, end)]
    return spans


def tar_spans(path: Path, buf: mmap.mmap) -> list[Span]:
    spans: list[Span] = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if member.isfile() and member.size:
                    a = member.offset_data
                    spans.extend(_member_spans(member.name, buf, a, a + member.size))
    except tarfile.TarError:
        return []
    return spans


def normalise(spans: list[Span], size: int) -> list[Span]:
    """Sorted, inside [0, size), non-overlapping and non-empty — or [] when the
    spans found contradict each other (a parser confused by the file)."""
    spans = sorted(spans)
    out: list[Span] = []
    for a, b in spans:
        if not 0 <= a < b <= size or (out and a < out[-1][1]):
            return []
        out.append((a, b))
    return out


def file_spans(path: Path) -> list[Span]:
    """The spans of ``path`` (a bundle tar, an ONNX model or a safetensors
    file, told by its name and checked by its content); [] for anything else."""
    size = path.stat().st_size
    if size < MIN_SPAN:
        return []
    name = path.name
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if name.endswith(".tar") or buf[257:262] == b"ustar":
            spans = tar_spans(path, buf) if buf[257:262] == b"ustar" else []
        elif name.endswith(".onnx"):
            spans = onnx_spans(buf)
        elif name.endswith(".safetensors"):
            spans = safetensors_spans(buf)
        else:
            spans = []
    return normalise(spans, size)
