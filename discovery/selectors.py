"""Semantic side of search: the per-process vector matrix and the query encoder.

The matrix lives in the in-memory facet index (``catalog.selectors.facet_index``)
and is reloaded with it when the catalogue's generation token changes; only
rows stored since the previous load are read again.

Up to ``EXACT_MAX`` models every candidate is scored exactly (a float32 copy,
1.5 KB per model). Above that the int8 matrix (384 bytes per model) is first
scored through a 64-dimensional projection on its principal directions
(``COARSE_DIM`` floats per model), and the best ``RERANK`` candidates are
rescored exactly from int8 — a flat in-process stand-in for an ANN index
(past a few million models, a pgvector HNSW index takes over: README).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from discovery.encoder import DIM, EncoderInfo, encoder_load

log = logging.getLogger(__name__)

EXACT_MAX = 20_000
COARSE_DIM = 64
RERANK = 2_000
SVD_SAMPLE = 5_000
# Rows stored this long before the previous load are read again: a writer's
# transaction may commit after a reader saw a later timestamp.
RELOAD_MARGIN = dt.timedelta(seconds=120)

# The semantic side adds at most SEMANTIC_TOP models to a result, each at least
# SEMANTIC_FLOOR cosine away from the question (see README: measured on the
# relevance set in bench/relevance_questions.json).
SEMANTIC_FLOOR = 0.2
SEMANTIC_TOP = 50


@functools.lru_cache(maxsize=1)
def _blas() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread() -> Any:
    """A web process answers many requests at once on few cores: one BLAS
    thread per request (on the shared 2-core machine a multi-threaded
    projection took 20 s instead of 3 s, a query 76 ms instead of 16 ms)."""
    return _blas().limit(limits=1, user_api="blas")


@dataclass
class VectorIndex:
    """Each model has one profile vector (row of ``q8``) and may have passage
    vectors (rows of ``xq8``, owned by ``xowner``, sorted by owner): a model's
    similarity to a question is the best of its vectors."""

    ids: np.ndarray  # the facet index's sorted model ids
    q8: np.ndarray  # (n, 384) int8: profile vectors
    scale: np.ndarray  # (n,) float32
    present: np.ndarray  # (n,) bool: a vector is stored
    updated: np.ndarray  # (n,) float64: when each vector was stored
    seen: dt.datetime | None  # newest updated_at read
    encoder: EncoderInfo | None  # what encodes questions
    xq8: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), dtype=np.int8))  # (m, 384) passages
    xscale: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))  # (m,)
    xowner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (m,) positions, sorted
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _dense: np.ndarray | None = None
    _xdense: np.ndarray | None = None
    _basis: np.ndarray | None = None
    _coarse: np.ndarray | None = None
    _xcoarse: np.ndarray | None = None

    # --- scoring ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        with self._lock, one_blas_thread():
            if len(self.ids) <= EXACT_MAX:
                if self._dense is None:
                    self._dense = self.q8.astype(np.float32) * self.scale[:, None]
                if self._xdense is None:
                    self._xdense = self.xq8.astype(np.float32) * self.xscale[:, None]
                return
            if self._coarse is not None and self._xcoarse is not None:
                return
            if self._basis is None:
                rows = np.flatnonzero(self.present)
                sample = rows[np.random.default_rng(0).permutation(len(rows))[:SVD_SAMPLE]]
                dense = self.q8[sample].astype(np.float32) * self.scale[sample, None]
                # Uncentred: the projection keeps inner products, not variances.
                _, _, vt = np.linalg.svd(dense, full_matrices=False)
                self._basis = np.ascontiguousarray(vt[:COARSE_DIM].T)  # (384, ≤ COARSE_DIM)
            if self._coarse is None:
                self._coarse = _project(self.q8, self.scale, self._basis)
            if self._xcoarse is None:
                self._xcoarse = _project(self.xq8, self.xscale, self._basis)

    def search(
        self, vector: np.ndarray, mask: np.ndarray, top: int = SEMANTIC_TOP, floor: float = SEMANTIC_FLOOR
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positions (best first) and cosines of at most ``top`` candidates of
        ``mask`` whose best cosine with ``vector`` is at least ``floor``."""
        allowed = mask & self.present
        candidates = np.flatnonzero(allowed)
        if not len(candidates):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        self._prepare()
        with one_blas_thread():
            return self._search(candidates, allowed, vector, top, floor)

    def ranking(self, vector: np.ndarray, head: int | None = None, floor: float = SEMANTIC_FLOOR) -> Ranking:
        """The whole catalogue's order for ``vector`` (exact search only), its
        best ``head`` (default RANK_HEAD) models sorted now (with any ties at the last one)."""
        head = RANK_HEAD if head is None else head
        n = len(self.ids)
        assert n <= EXACT_MAX
        present = self.present
        count = int(np.count_nonzero(present))
        if not count:
            return Ranking(self, vector, np.zeros(0, dtype=np.int32), complete=True)
        self._prepare()
        assert self._dense is not None
        assert self._xdense is not None
        with one_blas_thread():
            # The same scores as ``_search`` with every present model allowed
            # (absent ones at -inf, below any floor).
            if count < n // 2:
                sims = np.full(n, -np.inf, dtype=np.float32)
                sims[present] = self._dense[np.flatnonzero(present)] @ vector
            else:
                sims = self._dense @ vector
                if count < n:
                    sims[~present] = -np.inf
            if len(self.xowner):
                rows = np.flatnonzero(present[self.xowner])
                _raise_to_best(sims, self.xowner[rows], self._xdense[rows] @ vector)
        candidates = np.flatnonzero(sims >= floor)
        cand_sims = sims[candidates]
        complete = len(candidates) <= head
        if not complete:
            # Every model scoring at least the head-th best score: a prefix
            # of the whole order (ties at that score all inside it).
            cut = -np.partition(-cand_sims, head - 1)[head - 1]
            best = cand_sims >= cut
            candidates, cand_sims = candidates[best], cand_sims[best]
        order = np.argsort(-cand_sims, kind="stable")
        return Ranking(self, vector, candidates[order].astype(np.int32), complete=complete)

    def _search(
        self, candidates: np.ndarray, allowed: np.ndarray, vector: np.ndarray, top: int, floor: float
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.ids)
        sims = np.full(n, -np.inf, dtype=np.float32)
        if self._dense is not None:
            assert self._xdense is not None
            sims[candidates] = (
                self._dense[candidates] @ vector if len(candidates) < n // 2 else (self._dense @ vector)[candidates]
            )
            rows = np.flatnonzero(allowed[self.xowner])
            _raise_to_best(sims, self.xowner[rows], self._xdense[rows] @ vector)
        else:
            assert self._coarse is not None
            assert self._xcoarse is not None
            assert self._basis is not None
            if len(candidates) > RERANK:
                # A shortlist through the projection, then exact rescoring from int8.
                small = vector @ self._basis
                coarse = np.full(n, -np.inf, dtype=np.float32)
                coarse[allowed] = (self._coarse @ small)[allowed]
                rows = np.flatnonzero(allowed[self.xowner])
                _raise_to_best(coarse, self.xowner[rows], self._xcoarse[rows] @ small)
                candidates = np.sort(np.argpartition(-coarse, RERANK)[:RERANK])
            sims[candidates] = (self.q8[candidates].astype(np.float32) @ vector) * self.scale[candidates]
            short = np.zeros(n, dtype=bool)
            short[candidates] = True
            rows = np.flatnonzero(short[self.xowner])
            _raise_to_best(sims, self.xowner[rows], (self.xq8[rows].astype(np.float32) @ vector) * self.xscale[rows])
        cand_sims = sims[candidates]
        ok = cand_sims >= floor
        candidates, cand_sims = candidates[ok], cand_sims[ok]
        if len(candidates) > top:
            keep = np.argpartition(-cand_sims, top)[:top]
            candidates, cand_sims = candidates[keep], cand_sims[keep]
        order = np.argsort(-cand_sims, kind="stable")
        return candidates[order], cand_sims[order].astype(np.float32)


# A question's whole-catalogue ranking (exact search only) sorts just its
# best RANK_HEAD models at first: the rest are sorted only when a mask
# leaves fewer than a request needs among them.
RANK_HEAD = 1_024


class Ranking:
    """Every model whose best cosine with one question is ≥ ``floor``, best
    first, ties to the lower position: what ``VectorIndex.search(vector,
    mask, top=n)`` returns for a mask of every model. ``head`` is a prefix
    of that order (all of it when ``complete``); ``first`` sorts the rest
    only when a mask needs more than the prefix holds."""

    def __init__(self, vectors: VectorIndex, vector: np.ndarray, head: np.ndarray, complete: bool) -> None:
        self._vectors = vectors
        self._vector = vector
        # One attribute, replaced whole: a reader sees the prefix or the whole order.
        self._state = (head, complete)

    @property
    def head(self) -> np.ndarray:
        return self._state[0]

    @property
    def complete(self) -> bool:
        return self._state[1]

    def first(self, mask: np.ndarray, top: int) -> np.ndarray:
        """The first ``top`` positions of the order inside ``mask``."""
        head, complete = self._state
        inside = head[mask[head]]
        if len(inside) >= top or complete:
            return inside[:top]
        n = len(self._vectors.ids)
        everything = self._vectors.search(self._vector, np.ones(n, dtype=bool), top=n)[0].astype(np.int32)
        self._state = (everything, True)
        return everything[mask[everything]][:top]


def _raise_to_best(sims: np.ndarray, owners: np.ndarray, passage_sims: np.ndarray) -> None:
    """``sims[p] = max(sims[p], best of p's passage cosines)``; ``owners`` sorted."""
    if not len(owners):
        return
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    best = np.maximum.reduceat(passage_sims.astype(np.float32), starts)
    sims[owners[starts]] = np.maximum(sims[owners[starts]], best)


def _project(q8: np.ndarray, scale: np.ndarray, basis: np.ndarray) -> np.ndarray:
    out = np.empty((len(q8), basis.shape[1]), dtype=np.float32)
    for start in range(0, len(q8), 16_384):
        part = q8[start : start + 16_384].astype(np.float32) * scale[start : start + 16_384, None]
        out[start : start + 16_384] = part @ basis
    return out


def vector_index_load(ids: np.ndarray, previous: VectorIndex | None) -> VectorIndex:
    """Vectors for ``ids`` (sorted), reusing ``previous`` for rows not stored since."""
    from discovery.models import ModelEmbedding
    from discovery.services import encoder_resolve

    n = len(ids)
    q8 = np.zeros((n, DIM), dtype=np.int8)
    scale = np.zeros(n, dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    updated = np.zeros(n, dtype=np.float64)  # stored time of each row's vector (epoch seconds)
    same = np.zeros(n, dtype=bool)  # rows carried over from ``previous``
    prev_pos = np.zeros(n, dtype=np.int64)
    rows = ModelEmbedding.objects.all()
    reuse = previous is not None and previous.seen is not None and len(previous.ids) > 0
    if reuse:
        assert previous is not None
        assert previous.seen is not None
        prev_pos = np.minimum(np.searchsorted(previous.ids, ids), len(previous.ids) - 1)
        same = previous.ids[prev_pos] == ids
        # Only models that still have a stored vector keep theirs (a deleted
        # model's id may come back on SQLite).
        stored = np.fromiter(rows.values_list("model_id", flat=True).iterator(chunk_size=50_000), dtype=np.int64)
        same &= np.isin(ids, stored) & previous.present[prev_pos]
        q8[same] = previous.q8[prev_pos[same]]
        scale[same] = previous.scale[prev_pos[same]]
        present[same] = True
        updated[same] = previous.updated[prev_pos[same]]
        rows = rows.filter(updated_at__gte=previous.seen - RELOAD_MARGIN)
    seen = previous.seen if reuse and previous is not None else None
    model_ids, blobs, scales, times = [], [], [], []
    for model_id, blob, s, stamp in rows.values_list("model_id", "vector", "scale", "updated_at").iterator(
        chunk_size=10_000
    ):
        if seen is None or stamp > seen:
            seen = stamp
        blob = bytes(blob)
        if not blob or len(blob) % DIM:
            log.warning("search vectors of model %s are %d bytes, not n x %d: left out", model_id, len(blob), DIM)
            continue
        model_ids.append(model_id)
        blobs.append(blob)
        scales.append(s)
        times.append(stamp.timestamp())
    fresh = ~same  # rows whose prepared (float) form must be computed
    reread = np.zeros(n, dtype=bool)  # rows read again now: their passages come from this read
    new_x: list[np.ndarray] = []
    new_xscale: list[float] = []
    new_xowner: list[int] = []
    if model_ids:
        wanted = np.asarray(model_ids, dtype=np.int64)
        pos = np.searchsorted(ids, wanted)
        ok = pos < n
        ok[ok] = ids[pos[ok]] == wanted[ok]
        stamps = np.asarray(times, dtype=np.float64)[ok]
        good = np.flatnonzero(ok)
        pos = pos[ok]
        # Rows re-read inside the margin but stored at the same time are unchanged.
        changed = ~same[pos] | (updated[pos] != stamps)
        # A blob is the profile vector followed by any passage vectors (384 bytes each).
        lengths = np.fromiter((len(blobs[i]) for i in good), dtype=np.int64, count=len(good))
        if (lengths == DIM).all():
            q8[pos] = np.frombuffer(b"".join(blobs[i] for i in good), dtype=np.int8).reshape(-1, DIM)
        else:
            q8[pos] = np.frombuffer(b"".join(blobs[i][:DIM] for i in good), dtype=np.int8).reshape(-1, DIM)
        for j in np.flatnonzero(lengths > DIM):
            i = good[j]
            passages = np.frombuffer(blobs[i][DIM:], dtype=np.int8).reshape(-1, DIM)
            new_x.extend(passages)
            new_xscale.extend([scales[i]] * len(passages))
            new_xowner.extend([int(pos[j])] * len(passages))
        scale[pos] = np.asarray(scales, dtype=np.float32)[ok]
        present[pos] = True
        updated[pos] = stamps
        reread[pos] = True
        fresh[pos[changed]] = True
    # Passages: the previous ones of rows neither gone nor read again, plus those read now.
    kept_x = np.zeros(0, dtype=np.int64)
    kept_owner = np.zeros(0, dtype=np.int64)
    if reuse and previous is not None and len(previous.xowner):
        owner_ids = previous.ids[previous.xowner]
        at = np.minimum(np.searchsorted(ids, owner_ids), max(n - 1, 0))
        keep = (ids[at] == owner_ids) & same[at] & ~reread[at] if n else np.zeros(len(at), dtype=bool)
        kept_x, kept_owner = np.flatnonzero(keep), at[keep]
    xq8 = np.concatenate(
        [previous.xq8[kept_x] if previous is not None else np.zeros((0, DIM), np.int8)]
        + ([np.stack(new_x)] if new_x else [])
    ).astype(np.int8)
    xscale = np.concatenate(
        [
            previous.xscale[kept_x] if previous is not None else np.zeros(0, np.float32),
            np.asarray(new_xscale, np.float32),
        ]
    )
    xowner = np.concatenate([kept_owner, np.asarray(new_xowner, dtype=np.int64)])
    xorder = np.argsort(xowner, kind="stable")
    xq8, xscale, xowner = xq8[xorder], xscale[xorder], xowner[xorder]
    try:
        info = encoder_resolve(build=False)
    except Exception:  # noqa: BLE001 - search degrades to keywords, never fails
        log.exception("search encoder unavailable")
        info = None
    index = VectorIndex(
        ids=ids,
        q8=q8,
        scale=scale,
        present=present,
        updated=updated,
        seen=seen,
        encoder=info,
        xq8=np.ascontiguousarray(xq8),
        xscale=xscale,
        xowner=xowner,
    )
    if previous is not None:
        index._basis = previous._basis
        # Carry the prepared float forms over; compute only new or changed rows.
        todo = np.flatnonzero(fresh & present)
        n_kept = len(kept_x)
        if previous._dense is not None and n <= EXACT_MAX:
            dense = np.zeros((n, DIM), dtype=np.float32)
            dense[same] = previous._dense[prev_pos[same]]
            dense[todo] = q8[todo].astype(np.float32) * scale[todo, None]
            index._dense = dense
            if previous._xdense is not None:
                new = np.asarray(new_x, dtype=np.float32).reshape(-1, DIM) * np.asarray(new_xscale, np.float32)[:, None]
                index._xdense = np.concatenate([previous._xdense[kept_x], new])[xorder]
        elif previous._coarse is not None and index._basis is not None and n > EXACT_MAX:
            coarse = np.zeros((n, index._basis.shape[1]), dtype=np.float32)
            coarse[same] = previous._coarse[prev_pos[same]]
            with one_blas_thread():
                coarse[todo] = (q8[todo].astype(np.float32) * scale[todo, None]) @ index._basis
                if previous._xcoarse is not None:
                    new_rows = xorder >= n_kept  # positions (after sorting) of passages read now
                    xcoarse = np.zeros((len(xowner), index._basis.shape[1]), dtype=np.float32)
                    xcoarse[~new_rows] = previous._xcoarse[kept_x][xorder[~new_rows]]
                    if new_rows.any():
                        xcoarse[new_rows] = _project(xq8[new_rows], xscale[new_rows], index._basis)
                    index._xcoarse = xcoarse
            index._coarse = coarse
    return index


@functools.lru_cache(maxsize=1024)
def _cached_query_vector(key: str, directory: str, source: str, q: str) -> np.ndarray:
    from pathlib import Path

    encoder = encoder_load(EncoderInfo(key=key, source=source, directory=Path(directory)))
    return encoder.encode([q])[0]


def query_vector(index: VectorIndex, q: str) -> np.ndarray | None:
    """The question's unit vector, or None when no encoder is available."""
    info = index.encoder
    if info is None or not index.present.any():
        return None
    try:
        return _cached_query_vector(info.key, str(info.directory), info.source, " ".join(q.split()).lower())
    except Exception:  # noqa: BLE001 - a broken encoder leaves keyword search working
        log.exception("could not encode the question")
        return None


def cosine_of(index: VectorIndex, positions: Any, vector: np.ndarray) -> np.ndarray:
    """Each model's best cosine with ``vector`` (profile or passage)."""
    pos = np.asarray(positions, dtype=np.int64)
    sims = np.full(len(index.ids), -np.inf, dtype=np.float32)
    sims[pos] = (index.q8[pos].astype(np.float32) @ vector) * index.scale[pos]
    wanted = np.zeros(len(index.ids), dtype=bool)
    wanted[pos] = True
    rows = np.flatnonzero(wanted[index.xowner])
    _raise_to_best(sims, index.xowner[rows], (index.xq8[rows].astype(np.float32) @ vector) * index.xscale[rows])
    return sims[pos]
