"""Read a safetensors header without loading tensors (no torch needed)."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import IO, Any


def safetensors_header(path: str | Path) -> dict[str, Any]:
    """Return the JSON header of a safetensors file.

    Raises:
        ValueError: the file is not a well-formed safetensors file.
    """
    with open(path, "rb") as fh:
        return safetensors_header_read(fh)


def safetensors_header_read(fh: IO[bytes]) -> dict[str, Any]:
    """The JSON header of the safetensors file open as ``fh`` (reads only the header).

    Raises:
        ValueError: the bytes are not a well-formed safetensors header.
    """
    raw = fh.read(8)
    if len(raw) != 8:
        raise ValueError("not a safetensors file: too short")
    (length,) = struct.unpack("<Q", raw)
    if length > 100 * 1024 * 1024:
        raise ValueError("not a safetensors file: header too large")
    body = fh.read(length)
    if len(body) != length:
        raise ValueError("not a safetensors file: truncated header")
    try:
        header = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("not a safetensors file: the header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError("not a safetensors file: header is not an object")
    return header


def tensor_summary(header: dict[str, Any]) -> tuple[int, dict[str, int]]:
    """(scalar parameter count, parameters per dtype) of a safetensors header.

    Raises:
        ValueError: a tensor entry has no valid dtype or shape.
    """
    total = 0
    by_dtype: dict[str, int] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(spec, dict) or not isinstance(spec.get("shape"), list) or "dtype" not in spec:
            raise ValueError(f"not a safetensors file: bad entry for tensor {name!r}")
        n = math.prod(int(d) for d in spec["shape"])
        total += n
        by_dtype[str(spec["dtype"])] = by_dtype.get(str(spec["dtype"]), 0) + n
    return total, by_dtype


def parameter_count(path: str | Path) -> int:
    """Number of scalar parameters stored in a safetensors file."""
    header = safetensors_header(path)
    return sum(math.prod(spec["shape"]) for name, spec in header.items() if name != "__metadata__")
