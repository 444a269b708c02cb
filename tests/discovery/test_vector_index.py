"""The in-memory vector index: a model is as close to a question as the best of
its vectors (profile and passages), exactly and through the projection, and an
incremental reload equals a full one."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest

from discovery import selectors
from discovery.encoder import DIM, quantize
from discovery.selectors import VectorIndex, vector_index_load


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, directions: np.ndarray) -> np.ndarray:
    """Unit vectors mostly inside the span of ``directions`` (sentence vectors
    have such structure; the 64-d projection relies on it)."""
    v = rng.standard_normal((n, len(directions))).astype(np.float32) @ directions
    v += 0.02 * rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def build(profiles: np.ndarray, passages: dict[int, np.ndarray]) -> VectorIndex:
    """An index as the loader makes it: one scale per model over all its vectors."""
    n = len(profiles)
    q8 = np.zeros((n, DIM), dtype=np.int8)
    scale = np.zeros(n, dtype=np.float32)
    xq8, xscale, xowner = [], [], []
    for i in range(n):
        block = np.vstack([profiles[i : i + 1], passages.get(i, np.zeros((0, DIM), np.float32))])
        q, s = quantize(block.reshape(1, -1))
        rows = q.reshape(-1, DIM)
        q8[i], scale[i] = rows[0], s[0]
        for row in rows[1:]:
            xq8.append(row)
            xscale.append(s[0])
            xowner.append(i)
    return VectorIndex(
        ids=np.arange(1, n + 1, dtype=np.int64),
        q8=q8,
        scale=scale,
        present=np.ones(n, dtype=bool),
        updated=np.zeros(n),
        seen=None,
        encoder=None,
        xq8=np.asarray(xq8, dtype=np.int8).reshape(-1, DIM),
        xscale=np.asarray(xscale, dtype=np.float32),
        xowner=np.asarray(xowner, dtype=np.int64),
    )


def brute_force(profiles: np.ndarray, passages: dict[int, np.ndarray], q: np.ndarray) -> np.ndarray:
    best = profiles @ q
    for i, rows in passages.items():
        best[i] = max(best[i], float((rows @ q).max()))
    return best


@pytest.mark.parametrize("projected", [False, True])
def test_a_model_scores_the_best_of_its_profile_and_passages(monkeypatch: Any, projected: bool) -> None:
    rng = np.random.default_rng(1)
    n = 3000
    directions = unit(rng, 24)
    profiles = clustered(rng, n, directions)
    passages = {int(i): clustered(rng, int(rng.integers(1, 4)), directions) for i in rng.choice(n, 400, replace=False)}
    if projected:
        monkeypatch.setattr(selectors, "EXACT_MAX", 100)
        monkeypatch.setattr(selectors, "RERANK", 200)
    index = build(profiles, passages)
    mask = np.ones(n, dtype=bool)
    mask[::7] = False  # filtered out: neither their profile nor their passages count
    owner = next(i for i in sorted(passages) if mask[i])
    # A question near one passage of ``owner`` (far from its profile).
    q = passages[owner][-1] + 0.05 * clustered(rng, 1, directions)[0]
    q /= np.linalg.norm(q)
    pos, sims = index.search(q, mask, top=10, floor=-1.0)
    assert pos[0] == owner
    expected = brute_force(profiles, passages, q)
    assert sims[0] == pytest.approx(expected[owner], abs=0.02)
    assert all(mask[pos])
    # The same top 10 as the exact best-of over the allowed models.
    truth = np.flatnonzero(mask)[np.argsort(-expected[mask])[:10]]
    assert list(pos) == list(truth)
    if projected:
        assert index._coarse is not None
        assert index._xcoarse is not None


def test_a_filtered_out_models_passage_never_surfaces() -> None:
    rng = np.random.default_rng(2)
    profiles = unit(rng, 50)
    passages = {3: unit(rng, 2)}
    index = build(profiles, passages)
    mask = np.ones(50, dtype=bool)
    mask[3] = False
    pos, _ = index.search(passages[3][0], mask, top=50, floor=-1.0)
    assert 3 not in pos
    assert len(pos) == 49


def test_the_floor_applies_to_the_best_vector() -> None:
    rng = np.random.default_rng(3)
    profiles = unit(rng, 20)
    passages = {5: unit(rng, 1)}
    index = build(profiles, passages)
    pos, sims = index.search(passages[5][0], np.ones(20, dtype=bool), top=5, floor=0.9)
    assert list(pos) == [5]
    assert sims[0] > 0.95


@pytest.mark.django_db
@pytest.mark.parametrize("projected", [False, True])
def test_an_incremental_reload_equals_a_full_load(make_model: Any, monkeypatch: Any, projected: bool) -> None:
    from discovery.models import ModelEmbedding
    from discovery.services import pack

    if projected:
        monkeypatch.setattr(selectors, "EXACT_MAX", 2)
        monkeypatch.setattr(selectors, "SVD_SAMPLE", 100)
    rng = np.random.default_rng(4)
    models = [make_model(f"Model {i}") for i in range(6)]
    ModelEmbedding.objects.all().delete()

    def store(model: Any, k: int) -> np.ndarray:
        vectors = unit(rng, 1 + k)
        blob, scale = pack(vectors)
        ModelEmbedding.objects.update_or_create(
            model=model, defaults={"text_sha256": "x", "encoder": "test", "vector": blob, "scale": scale}
        )
        return vectors

    for i, m in enumerate(models[:5]):
        store(m, i % 3)
    ids = np.asarray(sorted(m.pk for m in models), dtype=np.int64)
    first = vector_index_load(ids, None)
    q = unit(rng, 1)[0]
    first.search(q, np.ones(len(ids), dtype=bool))  # prepares the float forms, carried over below
    # Changes: one model gets more passages, one loses them, one gets its first vector.
    store(models[0], 3)
    store(models[1], 0)
    store(models[5], 2)
    ModelEmbedding.objects.filter(model=models[2]).update(updated_at=dt.datetime.now(dt.UTC))
    incremental = vector_index_load(ids, first)
    full = vector_index_load(ids, None)
    assert np.array_equal(incremental.q8, full.q8)
    assert np.array_equal(incremental.present, full.present)
    assert np.array_equal(incremental.xowner, full.xowner)
    assert np.array_equal(incremental.xq8, full.xq8)
    mask = np.ones(len(ids), dtype=bool)
    for vector in unit(rng, 5):
        a, b = incremental.search(vector, mask, floor=-1.0), full.search(vector, mask, floor=-1.0)
        assert list(a[0]) == list(b[0])
        assert np.allclose(a[1], b[1], atol=1e-5)
