"""Read a safetensors header without loading tensors (no torch needed)."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any


def safetensors_header(path: str | Path) -> dict[str, Any]:
    """Return the JSON header of a safetensors file.

    Raises:
        ValueError: the file is not a well-formed safetensors file.
    """
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError("not a safetensors file: too short")
        (length,) = struct.unpack("<Q", raw)
        if length > 100 * 1024 * 1024:
            raise ValueError("not a safetensors file: header too large")
        header = json.loads(fh.read(length))
    if not isinstance(header, dict):
        raise ValueError("not a safetensors file: header is not an object")
    return header


def parameter_count(path: str | Path) -> int:
    """Number of scalar parameters stored in a safetensors file."""
    header = safetensors_header(path)
    return sum(math.prod(spec["shape"]) for name, spec in header.items() if name != "__metadata__")
