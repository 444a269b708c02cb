"""Per-generation memos of the search give what the per-request computation gives."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from django.db import connection

from catalog.selectors.search import _semantic
from discovery.encoder import DIM
from discovery.selectors import SEMANTIC_TOP, VectorIndex


def _vectors(n: int, passages: int, rng: np.random.Generator, topic: np.ndarray) -> VectorIndex:
    def unit_int8(rows: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(rows, DIM)).astype(np.float32) / np.sqrt(DIM)
        # A tenth of the rows lean towards the topic, at varied strengths.
        near = rng.random(rows) < 0.1
        x[near] += topic * rng.uniform(0.1, 1.5, size=(int(near.sum()), 1))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        scale = np.abs(x).max(axis=1) / 127
        return np.round(x / scale[:, None]).astype(np.int8), scale.astype(np.float32)

    q8, scale = unit_int8(n)
    xq8, xscale = unit_int8(passages)
    present = rng.random(n) > 0.05
    return VectorIndex(
        ids=np.arange(1, n + 1, dtype=np.int64),
        q8=q8,
        scale=scale,
        present=present,
        updated=np.zeros(n),
        seen=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        encoder=None,
        xq8=xq8,
        xscale=xscale,
        xowner=np.sort(rng.integers(0, n, size=passages)),
    )


@pytest.mark.parametrize("head", [None, 60, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_semantic_neighbours_from_the_memo_are_the_masked_scan(
    seed: int, head: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever part of the order the memo sorted first (the head; the rest
    when a mask needs it), a mask's neighbours are the masked scan's."""
    from discovery import selectors

    if head is not None:
        monkeypatch.setattr(selectors, "RANK_HEAD", head)
    rng = np.random.default_rng(seed)
    n = 3_000
    question = rng.normal(size=DIM).astype(np.float32)
    question /= np.linalg.norm(question)
    vectors = _vectors(n, 400, rng, question)
    index = SimpleNamespace(ids=vectors.ids, vectors=vectors, documents={})
    for density in (1.0, 0.5, 0.1, 0.01, 0.0):
        mask = rng.random(n) < density
        expected = vectors.search(question, mask)[0]
        got = _semantic(index, question, mask)  # type: ignore[arg-type]
        assert list(got) == list(expected)
        assert len(got) <= SEMANTIC_TOP
        if density == 1.0:
            assert len(got) == SEMANTIC_TOP  # the floor leaves more than the top to choose from
    assert len(index.documents["semantic"]) == 1  # one scan of the catalogue for every mask
    (ranking,) = index.documents["semantic"].values()
    if head == 8:
        assert ranking.complete  # the masks needed more than the first 8: the rest was sorted


def test_semantic_ranking_head_is_a_prefix_of_the_whole_order_with_ties() -> None:
    """Scores tied at the head's last score all join the head, in position order."""
    from discovery.selectors import SEMANTIC_FLOOR

    rng = np.random.default_rng(5)
    n = 400
    question = np.zeros(DIM, dtype=np.float32)
    question[0] = 1.0
    vectors = _vectors(n, 0, rng, question)
    vectors.present[:] = True
    # Every fifth model gets the same vector: many exact ties.
    vectors.q8[::5] = vectors.q8[0]
    vectors.scale[::5] = vectors.scale[0]
    whole = vectors.search(question, np.ones(n, dtype=bool), top=n)[0]
    for head in (1, 7, 30, 79, 80, 81, 150):
        ranking = vectors.ranking(question, head=head)
        assert len(ranking.head) >= min(head, len(whole))
        assert list(ranking.head) == list(whole[: len(ranking.head)])
    assert ranking.complete or len(whole) > 150
    assert (vectors.search(question, np.ones(n, dtype=bool), top=n)[1] >= SEMANTIC_FLOOR).all()


@pytest.mark.django_db
@pytest.mark.parametrize("wanted", [[], [0], [1, 3], [0, 1, 2, 3, 4, 5, 6, 7]])
def test_keyword_matches_restricted_to_candidates_are_the_whole_answer_inside_them(
    make_model: Any, wanted: list[int]
) -> None:
    from catalog.selectors import search
    from catalog.selectors.facet_index import facet_index

    for i in range(8):
        make_model(f"Fraud detector {i}", summary="card fraud" if i % 2 else "fraudulent payments")
    index = facet_index()
    candidates = index.ids[wanted]
    # Without the index nothing is kept, and every id as candidates gives every match.
    whole = search._text_matches("fraud", index.ids.copy())
    restricted = search._text_matches("fraud", candidates, index)
    assert whole is not None
    assert restricted is not None
    assert len(whole[0]) == 8

    def inside(found: tuple[np.ndarray, np.ndarray]) -> list[tuple[int, float]]:
        keep = np.isin(found[0], candidates)  # the answer may hold others: callers mask
        return sorted(zip(found[0][keep].tolist(), found[1][keep].tolist(), strict=True))

    assert inside(restricted) == inside(whole)
    kept = "fraud" in index.documents.get("keyword", {})
    assert kept == (connection.vendor != "postgresql" or len(wanted) >= len(index.ids) // 4)


def test_a_new_word_is_encoded_beside_its_keyword_query(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import discovery.selectors
    from catalog.selectors.search import _encode_ahead

    calls: list[tuple[str, str]] = []

    def fake_query_vector(index: Any, q: str) -> np.ndarray:
        calls.append((q, threading.current_thread().name))
        return np.ones(DIM, dtype=np.float32)

    monkeypatch.setattr(discovery.selectors, "query_vector", fake_query_vector)
    vectors = _vectors(50, 0, np.random.default_rng(0), np.ones(DIM, dtype=np.float32) / np.sqrt(DIM))
    index: Any = SimpleNamespace(vectors=vectors, documents={})
    ahead = _encode_ahead(index, "Tumour scans")
    assert ahead is not None
    assert np.array_equal(ahead.result(), np.ones(DIM, dtype=np.float32))
    assert calls == [("Tumour scans", calls[0][1])]
    assert calls[0][1].startswith("query-encode")
    # The thread also ranked the catalogue for the vector: the request's scan is a memo hit.
    (ranking,) = index.documents["semantic"].values()
    assert list(ranking.head) == list(
        vectors.search(np.ones(DIM, dtype=np.float32), np.ones(50, dtype=bool), top=50)[0]
    )
    # A word whose keyword answer is kept sends no query: nothing to overlap.
    index.documents["keyword"] = {"tumour scans": (np.zeros(0), np.zeros(0))}
    assert _encode_ahead(index, "tumour  SCANS") is None
    assert _encode_ahead(SimpleNamespace(vectors=None, documents={}), "tumour") is None  # type: ignore[arg-type]
    assert _encode_ahead(index, "!!") is None
    assert len(calls) == 1
