"""Process start-up for the web app."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Load the URLconf (and so every view module), then move everything
    loaded so far out of the cyclic garbage collector's reach.

    These objects live as long as the process; left in the collector's
    generations, every full collection walks them again. A free-text search
    allocates thousands of row tuples, which sets off such collections:
    measured here, its p95 went from 48 ms to 24 ms with this (docs/BENCHMARKS.md).
    """
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports every view module
    gc.collect()
    gc.freeze()
