"""``model_search``: the one search the web UI and the API share."""

from __future__ import annotations

import functools
import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db import connection
from django.db.models import Case, IntegerField, Q, Value, When

from catalog.models import RegisteredModel
from catalog.selectors.facet_index import FacetIndex, facet_index, name_key
from catalog.selectors.taxonomy import FacetTree, TreeNode, UnknownTaxonomyNode, taxonomy_tree
from catalog.selectors.visibility import visibility_q

if TYPE_CHECKING:
    from discovery.selectors import Ranking

SORTS = ("relevance", "newest", "precision")
# Columns a result list never shows; not loading them keeps a page cheap.
LIST_DEFERRED = (
    "description",
    "search_document",
    "latest_version__files",
    "latest_version__hyperparameters",
    "latest_version__input_schema",
    "latest_version__output_schema",
    "latest_version__labels",
    "latest_version__description",
)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class SearchParams:
    q: str = ""
    modality: str = ""
    result: str = ""
    domain: str = ""
    team: str = ""
    framework: str = ""
    min_precision: float | None = None
    runtime: str = ""
    precision: str = ""
    hardware: str = ""
    max_p95_ms: float | None = None
    sort: str = "relevance"
    license: str = ""
    tag: str = ""


@dataclass
class SearchResult:
    params: SearchParams
    user: Any
    ids: np.ndarray  # every matching model id, in result order
    index: FacetIndex
    team_counts: list[tuple[str, str, int]] = field(default_factory=list)
    # Card facets over the result set: (value, count), most common first.
    license_counts: list[tuple[str, int]] = field(default_factory=list)
    tag_counts: list[tuple[str, int]] = field(default_factory=list)
    # The selected path of each filtered tree.
    selected: dict[str, str] = field(default_factory=dict)
    # Which models of the index match (by position), and what is counted over them.
    mask: np.ndarray | None = None
    facts: MaskFacts | None = None

    @functools.cached_property
    def placed(self) -> dict[str, np.ndarray]:
        """Each tree's node ids of the matching models."""
        positions = np.flatnonzero(self.mask) if self.mask is not None else np.zeros(0, dtype=np.int64)
        return {kind: column[positions] for kind, column in _tree_columns(self.index).items()}

    @property
    def total(self) -> int:
        return len(self.ids)

    @functools.cached_property
    def facets(self) -> dict[str, list[TreeNode]]:
        """Each tree with its counts rolled up over the result (built when asked: the API's JSON answer does not)."""
        return {
            kind: taxonomy_tree(
                kind=kind,
                own_counts=facet_tree(self.index, kind).own_counts(placed),
                selected=self.selected.get(kind, ""),
                rows=self.index.node_rows[kind],
            )
            for kind, placed in self.placed.items()
        }

    def tree_json(self, kind: str) -> bytes:
        """``[n.as_dict(prune=True) for n in self.facets[kind] if n.count]`` as JSON, without the nodes."""
        tree = facet_tree(self.index, kind)
        counts = self.facts.trees[kind] if self.facts is not None else tree.counts(self.placed[kind])
        return tree.json(counts)

    def rows(self, start: int = 0, stop: int | None = None) -> list[RegisteredModel]:
        """The models at ``[start:stop]`` of the result order, fully loaded."""
        wanted = [int(i) for i in self.ids[start:stop]]
        by_id = {
            m.pk: m
            for m in RegisteredModel.objects.filter(visibility_q(self.user), pk__in=wanted)
            .select_related("latest_version")
            .defer(*LIST_DEFERRED)
            .prefetch_related("latest_version__metrics")
        }
        rows = [by_id[i] for i in wanted if i in by_id]
        # Teams and tree nodes come from the index: joining them costs more
        # than the whole page otherwise.
        nodes = self.index.nodes
        for m in rows:
            m.team = self.index.teams[m.team_id]
            m.modality = nodes["modality"][m.modality_id]  # type: ignore[assignment]
            m.result_kind = nodes["result"][m.result_kind_id]  # type: ignore[assignment]
            m.domain = nodes["domain"][m.domain_id]  # type: ignore[assignment]
        return rows

    def page(self, number: int, size: int) -> list[RegisteredModel]:
        start = (max(number, 1) - 1) * size
        return self.rows(start, start + size)


def _terms(q: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(q)][:12]


def query_problem(q: str) -> str | None:
    """Why ``q`` cannot be searched (None: it can, or it is empty).

    A question needs at least two letters or digits: only punctuation, one
    letter or only emoji would otherwise match everything (or nothing useful)."""
    if not q.strip():
        return None
    if sum(len(t) for t in _terms(q)) < 2:
        return (
            f"“{q.strip()[:40]}” has nothing to search for: type at least two letters or digits "
            "(a name, a task, a label, or a question such as “classify emails by department”)."
        )
    return None


def _postgres_tsquery(terms: list[str]) -> str:
    # Every term must match; a prefix match keeps the live search useful while
    # a word is still being typed. Terms are \w+ only, so no tsquery syntax leaks in.
    return " & ".join(f"{t}:*" for t in terms)


# Below this many candidates (and a quarter of the catalogue) the text query
# is restricted to them, so that PostgreSQL ranks only rows that can appear in
# the result. Above it the
# query matches the whole catalogue (the candidates are applied in memory):
# sending thousands of ids costs more than ranking the extra rows, and the
# answer can be kept for the generation.
RESTRICT_TEXT_BELOW = 2_000
# Whole-catalogue keyword answers kept per generation (on the facet index,
# dropped with it on any write): a word's matches and ranks are the same for
# every viewer and filter until the catalogue changes.
KEYWORD_MEMO_MAX = 256


def _text_matches(
    q: str, candidates: np.ndarray, index: FacetIndex | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Ids and relevance of the models matching every term of ``q`` (None: no terms).

    ``candidates`` are the model ids the other filters left; the answer may
    hold other models too (callers apply their mask).
    """
    terms = _terms(q)
    if not terms:
        return None
    key = " ".join(terms)
    memo: dict[str, tuple[np.ndarray, np.ndarray]] = index.documents.setdefault("keyword", {}) if index else {}
    if key in memo:
        return memo[key]
    # Restricted when the other filters left few candidates, a small part of
    # the catalogue; otherwise the whole catalogue's answer is kept.
    few = len(candidates) < RESTRICT_TEXT_BELOW and (index is None or len(candidates) < len(index.ids) // 4)
    restrict = connection.vendor == "postgresql" and few
    if connection.vendor == "postgresql":
        sql = (
            "SELECT model_id, ts_rank_cd(document, query) FROM catalog_modelsearch, "
            "to_tsquery('english', %s) AS query WHERE document @@ query"
        )
        args: list[Any] = [_postgres_tsquery(terms)]
        if restrict:
            # One text literal cast by the server: psycopg's list adapter quotes
            # element by element in Python (~3 ms for 1,500 ids).
            sql += " AND model_id = ANY(%s::bigint[])"
            args.append("{" + ",".join(map(str, candidates.tolist())) + "}")
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            pairs = cursor.fetchall()
    else:
        pairs = _fallback_matches(terms)
    if not pairs:
        found = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    else:
        ids, ranks = zip(*pairs, strict=True)
        found = (
            np.fromiter(ids, dtype=np.int64, count=len(ids)),
            np.fromiter(ranks, dtype=np.float64, count=len(ranks)),
        )
    if not restrict and index is not None:
        if len(memo) >= KEYWORD_MEMO_MAX:
            memo.clear()
        memo[key] = found
    return found


def _fallback_matches(terms: list[str]) -> list[tuple[int, float]]:
    # Portable fallback: every term in name, summary or the search document;
    # a hit in the name weighs most, as the A/B/C weights do on PostgreSQL.
    qs = RegisteredModel.objects.all()
    rank: Any = Value(0)
    for term in terms:
        qs = qs.filter(Q(name__icontains=term) | Q(summary__icontains=term) | Q(search_document__icontains=term))
        rank = rank + Case(
            When(name__icontains=term, then=Value(3)),
            When(summary__icontains=term, then=Value(2)),
            default=Value(1),
            output_field=IntegerField(),
        )
    return list(qs.annotate(rank=rank).values_list("id", "rank"))


# Reciprocal-rank fusion: score = sum over the keyword and the semantic lists of
# 1 / (RRF_K + rank). A model whose slug or name (case and spacing aside) is
# the question itself comes first.
RRF_K = 60
EXACT_BONUS = 1.0


def _hybrid(
    index: FacetIndex, q: str, mask: np.ndarray, text: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Fused relevance and the hit mask: keyword matches (every term) plus the
    semantic neighbours of ``q`` among ``mask`` (cosine ≥ SEMANTIC_FLOOR, at
    most SEMANTIC_TOP of them)."""
    from discovery.selectors import query_vector

    n = len(index.ids)
    score = np.zeros(n, dtype=np.float64)
    hit = np.zeros(n, dtype=bool)
    if len(text[0]):
        pos = _keyword_order(index, q, text)
        pos = pos[mask[pos]]
        hit[pos] = True
        score[pos] += 1.0 / (RRF_K + np.arange(1, len(pos) + 1))
    vectors = index.vectors
    if vectors is not None:
        vector = query_vector(vectors, q)
        if vector is not None:
            sem_pos = _semantic(index, vector, mask)
            hit[sem_pos] = True
            score[sem_pos] += 1.0 / (RRF_K + np.arange(1, len(sem_pos) + 1))
    exact, named = _exact_matches(index, q)
    if exact is not None and mask[exact]:
        hit[exact] = True
        score[exact] += EXACT_BONUS
    named = named[mask[named]]
    hit[named] = True
    score[named] += EXACT_BONUS
    return score, hit


def _exact_matches(index: FacetIndex, q: str) -> tuple[int | None, np.ndarray]:
    """The model whose slug is ``slugify(q)`` and the models whose name is
    ``q`` (case and spacing aside), for the whole catalogue; kept per
    generation and question beside the keyword memo."""
    from django.utils.text import slugify

    memo: dict[str, tuple[int | None, np.ndarray]] = index.documents.setdefault("exact", {})
    found = memo.get(q)
    if found is None:
        slug = slugify(q)
        exact = index.slugs.get(slug) if slug else None
        named = (
            np.flatnonzero(index.name_hash == hash(name_key(q)))
            if index.name_hash is not None
            else np.zeros(0, dtype=np.int64)
        )
        if len(memo) >= KEYWORD_MEMO_MAX:
            memo.clear()
        found = memo[q] = (exact, named)
    return found


def _keyword_order(index: FacetIndex, q: str, text: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Positions of the keyword matches (ids unknown to the index dropped), best
    rank first, ties to the higher id. Kept beside a memoised keyword answer:
    the order of any subset of the matches is this order restricted to it."""
    key = " ".join(_terms(q))
    memoised = index.documents.get("keyword", {}).get(key) is text
    orders: dict[str, np.ndarray] = index.documents.setdefault("keyword_order", {})
    if memoised and key in orders:
        return orders[key]
    text_ids, text_rank = text
    pos = np.searchsorted(index.ids, text_ids)
    known = pos < len(index.ids)
    known[known] = index.ids[pos[known]] == text_ids[known]
    pos, ranks = pos[known], text_rank[known]
    ordered = pos[np.lexsort((-index.ids[pos], -ranks))]
    if memoised:
        if len(orders) >= KEYWORD_MEMO_MAX:
            orders.clear()
        orders[key] = ordered
    return ordered


# Semantic neighbours kept per generation and question, over the whole
# catalogue (positions by decreasing cosine, those ≥ SEMANTIC_FLOOR): a
# request's neighbours are the first SEMANTIC_TOP of them inside its mask,
# the answer ``VectorIndex.search`` gives for that mask. Only while the
# search is exact (≤ EXACT_MAX models); above, its shortlist depends on the mask.
# As many questions as the keyword memo keeps words: a ranking is its sorted
# head (1,024 positions, discovery.selectors.RANK_HEAD) unless a mask needed
# more, so 256 of them take ~1.5 MB per process (at most ~20 MB, all sorted).
SEMANTIC_MEMO_MAX = KEYWORD_MEMO_MAX


def _semantic(index: FacetIndex, vector: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from discovery.selectors import EXACT_MAX, SEMANTIC_TOP

    vectors = index.vectors
    assert vectors is not None
    if len(index.ids) > EXACT_MAX:
        return vectors.search(vector, mask)[0]
    return _ranking(index, vector).first(mask, SEMANTIC_TOP)


def _ranking(index: FacetIndex, vector: np.ndarray) -> Ranking:
    """The generation's whole-catalogue semantic ranking of ``vector`` (exact search only)."""
    vectors = index.vectors
    assert vectors is not None
    memo: dict[bytes, Ranking] = index.documents.setdefault("semantic", {})
    key = vector.tobytes()
    ranked = memo.get(key)
    if ranked is None:
        ranked = vectors.ranking(vector)
        if len(memo) >= SEMANTIC_MEMO_MAX:
            memo.clear()
        memo[key] = ranked
    return ranked


# A word new to this generation costs a keyword query (a PostgreSQL round
# trip) and, if new to this process, an encoding (onnxruntime) and a semantic
# scan (numpy): all three release the GIL, so the encoding and the scan run in
# a thread while the query waits.
_encoders: tuple[int, ThreadPoolExecutor] | None = None
_encoders_lock = threading.Lock()


def _encode_ahead(index: FacetIndex, q: str) -> Future[Any] | None:
    """Start encoding ``q`` beside the keyword query it is about to need (None:
    no query will be sent, or nothing to encode)."""
    global _encoders
    terms = _terms(q)
    vectors = index.vectors
    if not terms or vectors is None or " ".join(terms) in index.documents.get("keyword", {}):
        return None
    from discovery.selectors import query_vector

    with _encoders_lock:
        if _encoders is None or _encoders[0] != os.getpid():  # threads do not survive a fork
            _encoders = (os.getpid(), ThreadPoolExecutor(max_workers=2, thread_name_prefix="query-encode"))
        pool = _encoders[1]

    def encode() -> np.ndarray | None:
        from discovery.selectors import EXACT_MAX

        vector = query_vector(vectors, q)
        if vector is not None and len(vectors.ids) <= EXACT_MAX:
            _ranking(index, vector)  # the scan too, while the keyword query still waits
        return vector

    return pool.submit(encode)


def _visible_mask(index: FacetIndex, user: Any) -> np.ndarray:
    """The same rule as ``visibility_q``: internal, or the user's own teams."""
    if user is not None and user.is_authenticated and user.is_superuser:
        return np.ones(len(index.ids), dtype=bool)
    mask = index.internal.copy()
    if user is not None and user.is_authenticated:
        team_ids = list(user.teams.values_list("id", flat=True))
        if team_ids:
            mask |= np.isin(index.team, team_ids)
    return mask


def _variant_mask(index: FacetIndex, p: SearchParams) -> np.ndarray | None:
    if not (p.runtime or p.precision or p.hardware or p.max_p95_ms is not None):
        return None
    # One served variant of the latest version must meet every bound at once.
    ok = np.ones(len(index.variant_model), dtype=bool)
    codes = index.variant_codes
    if p.runtime:
        ok &= index.variant_runtime == codes.get(p.runtime)
    if p.precision:
        ok &= index.variant_precision == codes.get(p.precision)
    if p.hardware:
        ok &= index.variant_hardware == codes.get(p.hardware)
    if p.max_p95_ms is not None:
        ok &= index.variant_p95 <= p.max_p95_ms  # nan compares False
    mask = np.zeros(len(index.ids), dtype=bool)
    mask[index.variant_model[ok]] = True
    return mask


def model_search(*, user: Any, params: SearchParams) -> SearchResult:
    """Search the models ``user`` may see.

    Tree filters select the node's subtree through the indexed path prefix;
    free text goes through PostgreSQL's GIN-indexed tsvector (or the portable
    fallback); the remaining filters, the facet counts and the order are
    computed on the in-memory facet index.

    Raises:
        UnknownTaxonomyNode: a tree filter names no node.
    """
    p = params
    index = facet_index()
    mask = _visible_mask(index, user)
    if index.active is not None:
        mask &= index.active  # deprecated and archived models leave search results
    selected: dict[str, str] = {}
    for kind, column in _tree_columns(index).items():
        path = getattr(p, kind).strip("/")
        if path:
            # The node and its subtree, from the tree rows loaded with the
            # index (same generation: a tree edit changes the token).
            below = path + "/"
            subtree = [row[0] for row in index.node_rows[kind] if row[1] == path or row[1].startswith(below)]
            if not any(row[1] == path for row in index.node_rows[kind]):
                raise UnknownTaxonomyNode(kind, path)
            selected[kind] = path
            # A lookup table over node ids (one gather) instead of np.isin (~1 ms at 100k).
            inside = np.zeros(max(int(column.max(initial=0)), max(subtree)) + 1, dtype=bool)
            inside[subtree] = True
            mask &= inside[column]
    if p.team:
        team_id = next((t.pk for t in index.teams.values() if t.slug == p.team), None)
        mask &= index.team == (team_id if team_id is not None else -1)
    if p.framework:
        mask &= index.framework == index.framework_codes.get(p.framework)
    if p.license and index.license is not None:
        mask &= index.license == index.license_codes.get(p.license)
    if p.tag and index.tag_model is not None and index.tag_code is not None:
        tagged = np.zeros(len(index.ids), dtype=bool)
        tagged[index.tag_model[index.tag_code == index.tag_codes.get(p.tag)]] = True
        mask &= tagged
    if p.min_precision is not None:
        mask &= index.precision >= p.min_precision  # nan compares False
    variants = _variant_mask(index, p)
    if variants is not None:
        mask &= variants
    rank = np.zeros(len(index.ids), dtype=np.float64)
    ahead = _encode_ahead(index, p.q)
    text = _text_matches(p.q, index.ids[mask], index)
    if ahead is not None:
        ahead.result()  # the vector is now in query_vector's cache (None or an error: keyword only, as before)
    if text is not None:
        rank, hit = _hybrid(index, p.q, mask, text)
        mask &= hit

    facts = _mask_facts(index, mask)
    sort = p.sort if p.sort in SORTS else "relevance"
    if sort == "relevance" and text is not None:
        positions = np.flatnonzero(mask)
        ids = index.ids[positions]
        # Best precision first, unmeasured last: -precision with nan as 1.0, kept per generation.
        ordered = ids[np.lexsort((-ids, _negated_precision(index)[positions], -rank[positions]))]
    else:
        # The whole catalogue's order for this sort, kept per generation: the
        # matches keep their relative order (ids are unique, so no ties).
        everything = _order(index, "precision" if sort == "precision" else "newest")
        ordered = index.ids[everything[mask[everything]]]
    return SearchResult(
        params=p,
        user=user,
        ids=ordered,
        index=index,
        team_counts=facts.team_counts,
        license_counts=facts.license_counts,
        tag_counts=facts.tag_counts,
        selected=selected,
        mask=mask,
        facts=facts,
    )


def _tree_columns(index: FacetIndex) -> dict[str, np.ndarray]:
    return {"modality": index.modality, "result": index.result, "domain": index.domain}


# What is counted over a result set (teams, licences, tags, each tree's
# rolled-up counts) depends on its set of models only: kept per generation
# (on the facet index, dropped with it on any write) by the set's bitmap.
# Every request still builds its own mask and order; equal masks (the same
# filters and words for the same kind of viewer) share their counts.
MASK_MEMO_MAX = 256


@dataclass
class MaskFacts:
    team_counts: list[tuple[str, str, int]]
    license_counts: list[tuple[str, int]]
    tag_counts: list[tuple[str, int]]
    trees: dict[str, np.ndarray]  # kind → ``FacetTree.counts`` of the set
    facets_json: bytes | None = None  # the API's ``facets`` answer, made on first use


def _mask_facts(index: FacetIndex, mask: np.ndarray) -> MaskFacts:
    memo: dict[bytes, MaskFacts] = index.documents.setdefault("mask_facts", {})
    key = np.packbits(mask).tobytes()
    facts = memo.get(key)
    if facts is not None:
        return facts
    positions = np.flatnonzero(mask)
    teams = index.teams
    per_team = np.bincount(index.team[positions]) if len(positions) else np.zeros(0, dtype=np.int64)
    team_counts = sorted(
        ((teams[i].slug, teams[i].name, int(n)) for i, n in enumerate(per_team) if n and i in teams),
        key=lambda t: (-t[2], t[0]),
    )
    license_counts, tag_counts = _card_counts(index, mask, positions)
    trees = {kind: facet_tree(index, kind).counts(column[positions]) for kind, column in _tree_columns(index).items()}
    facts = MaskFacts(team_counts, license_counts, tag_counts, trees)
    if len(memo) >= MASK_MEMO_MAX:
        memo.clear()
    memo[key] = facts
    return facts


def _negated_precision(index: FacetIndex) -> np.ndarray:
    """``-nan_to_num(index.precision, nan=-1.0)`` for every model (kept per generation)."""
    orders: dict[str, np.ndarray] = index.documents.setdefault("order", {})
    negated = orders.get("-precision")
    if negated is None:
        negated = orders["-precision"] = -np.nan_to_num(index.precision, nan=-1.0)
    return negated


def _order(index: FacetIndex, sort: str) -> np.ndarray:
    """Positions of every model in ``sort`` order (newest first, or best
    precision first, unmeasured last), ties to the higher id."""
    orders: dict[str, np.ndarray] = index.documents.setdefault("order", {})
    order = orders.get(sort)
    if order is None:
        if sort == "precision":
            order = np.lexsort((-index.ids, _negated_precision(index)))
        else:
            order = np.lexsort((-index.ids, -index.created))
        orders[sort] = order
    return order


def facet_tree(index: FacetIndex, kind: str) -> FacetTree:
    """The generation's ``FacetTree`` of ``kind`` (built on first use)."""
    trees: dict[str, FacetTree] = index.documents.setdefault("facet_tree", {})
    tree = trees.get(kind)
    if tree is None:
        tree = trees[kind] = FacetTree(index.node_rows[kind])
    return tree


def _card_counts(
    index: FacetIndex, mask: np.ndarray, positions: np.ndarray, top: int = 30
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Licence and tag counts over the matching models (the most common ``top``)."""
    licenses: list[tuple[str, int]] = []
    tags: list[tuple[str, int]] = []
    if index.license is not None and len(positions):
        names = {code: value for value, code in index.license_codes.index.items()}
        counts = np.bincount(index.license[positions])
        licenses = [(names[i], int(n)) for i, n in enumerate(counts) if n and names.get(i)]
    if index.tag_model is not None and index.tag_code is not None and len(index.tag_model):
        names = {code: value for value, code in index.tag_codes.index.items()}
        counts = np.bincount(index.tag_code[mask[index.tag_model]])
        tags = [(names[i], int(n)) for i, n in enumerate(counts) if n]
    order = lambda t: (-t[1], t[0])  # noqa: E731
    return sorted(licenses, key=order)[:top], sorted(tags, key=order)[:top]
