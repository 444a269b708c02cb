"""Deterministic, stratified train/holdout splits."""

from __future__ import annotations

import numpy as np


def stratified_split(y: list[int] | np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, holdout) with about ``holdout`` of every class held out.

    Every class with at least two examples keeps one in each part.
    """
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    train: list[int] = []
    held: list[int] = []
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        rng.shuffle(idx)
        n_hold = int(round(len(idx) * holdout))
        if len(idx) >= 2:
            n_hold = min(max(n_hold, 1), len(idx) - 1)
        held.extend(idx[:n_hold].tolist())
        train.extend(idx[n_hold:].tolist())
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(held), dtype=np.int64)
