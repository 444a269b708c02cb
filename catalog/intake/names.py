"""File-name and file-kind rules for a model folder."""

from __future__ import annotations

import re

# Flat folder, portable names: no separators, no "..", not absolute, no control
# characters, no leading dot or dash (hidden files, option-like names).
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib")
SAFETENSORS_SUFFIX = ".safetensors"
SHARD_INDEX = "model.safetensors.index.json"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a file of a model folder, or None when it can."""
    if not isinstance(name, str) or not name:
        return "a file name is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"{name!r} contains control characters"
    if "/" in name or "\\" in name:
        return f"{name!r} contains a path separator (upload a flat folder: files only, no sub-folders)"
    if name in (".", "..") or ".." in name:
        return f"{name!r} contains '..'"
    if not _NAME.match(name):
        return f"{name!r} is not a plain file name (letters, digits, '.', '_' and '-', at most 200 characters)"
    return None


def is_pickle(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)
