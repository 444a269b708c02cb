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


def inner_split(y_train: list[int] | np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (fit, validation) *within the training part* for early stopping
    and choosing between recipes — never the held-out evaluation split.

    Stratified like ``stratified_split`` but with another stream of the seed
    (so the two splits are not the same permutation), and a class with fewer
    than 3 training examples stays entirely in the fit part."""
    y = np.asarray(y_train)
    rng = np.random.default_rng([seed, 1])
    fit: list[int] = []
    val: list[int] = []
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * share)) if len(idx) >= 3 else 0
        if len(idx) >= 3:
            n_val = min(max(n_val, 1), len(idx) - 2)
        val.extend(idx[:n_val].tolist())
        fit.extend(idx[n_val:].tolist())
    return np.array(sorted(fit), dtype=np.int64), np.array(sorted(val), dtype=np.int64)
