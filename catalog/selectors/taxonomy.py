from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from catalog.taxonomy import TAXONOMIES


class UnknownTaxonomyNode(ValueError):
    def __init__(self, kind: str, path: str) -> None:
        super().__init__(f"unknown {kind} {path!r}")
        self.kind = kind
        self.path = path


@dataclass
class TreeNode:
    id: int
    path: str
    slug: str
    name: str
    depth: int
    count: int = 0
    selected: bool = False
    children: list[TreeNode] = field(default_factory=list)

    def as_dict(self, *, prune: bool = False) -> dict[str, object]:
        """Nested dict; with ``prune``, children without models are left out."""
        children = [c for c in self.children if c.count or not prune]
        return {
            "path": self.path,
            "name": self.name,
            "count": self.count,
            "children": [c.as_dict(prune=prune) for c in children],
        }


def taxonomy_tree(
    *,
    kind: str,
    own_counts: dict[int, int] | None = None,
    selected: str = "",
    rows: list[tuple[int, str, str, str, int]] | None = None,
) -> list[TreeNode]:
    """The whole tree of ``kind``; with ``own_counts`` (node id → models placed
    exactly there) each node's count rolls up its descendants'."""
    if rows is None:
        rows = list(
            TAXONOMIES[kind]._default_manager.order_by("path").values_list("pk", "path", "slug", "name", "depth")
        )
    by_path: dict[str, TreeNode] = {}
    roots: list[TreeNode] = []
    for node_id, path, slug, name, depth in rows:
        node = TreeNode(id=node_id, path=path, slug=slug, name=name, depth=depth)
        node.selected = bool(selected) and (path == selected or selected.startswith(path + "/"))
        by_path[path] = node
        parent_path = path.rpartition("/")[0]
        (by_path[parent_path].children if parent_path in by_path else roots).append(node)
    if own_counts:
        for node in by_path.values():
            n = own_counts.get(node.id, 0)
            if not n:
                continue
            # Roll up: every ancestor (its path is a prefix) counts the model too.
            parts = node.path.split("/")
            for i in range(1, len(parts) + 1):
                by_path["/".join(parts[:i])].count += n
    return roots


# Rendered trees kept per FacetTree (so per generation), by their counts.
JSON_MEMO_MAX = 512


class FacetTree:
    """One tree's facet counts without building nodes: each model's node id is
    mapped to a row (``rows`` in path order), own counts are rolled up to every
    ancestor with one small matrix product, and the API's pruned JSON is
    joined from per-node bytes prepared once. Built once per catalogue
    generation (the rows come from the facet index)."""

    def __init__(self, rows: list[tuple[int, str, str, str, int]]) -> None:
        from catalog.selectors.documents import json_bytes

        self.rows = rows
        n = len(rows)
        by_path = {path: r for r, (_, path, _, _, _) in enumerate(rows)}
        top = max((node_id for node_id, *_ in rows), default=-1)
        # Node id → row; ids without a row go to a spare row n that is never shown.
        self.row_of = np.full(top + 2, n, dtype=np.int64)
        for r, (node_id, *_) in enumerate(rows):
            self.row_of[node_id] = r
        self.children: list[list[int]] = [[] for _ in range(n)]
        self.roots: list[int] = []
        # up[r, a] = 1 when row a is row r or one of its ancestors (a path prefix).
        self.up = np.zeros((n + 1, n), dtype=np.int64)
        for r, (_, path, _, _, _) in enumerate(rows):
            parent = by_path.get(path.rpartition("/")[0])
            (self.children[parent] if parent is not None else self.roots).append(r)
            parts = path.split("/")
            for i in range(1, len(parts) + 1):
                a = by_path.get("/".join(parts[:i]))
                if a is not None:
                    self.up[r, a] = 1
        self._json: dict[bytes, bytes] = {}
        self.heads = [
            b'{"path":' + json_bytes(path) + b',"name":' + json_bytes(name) + b',"count":'
            for _, path, _, name, _ in rows
        ]

    def counts(self, node_ids: np.ndarray) -> np.ndarray:
        """Rolled-up count per row for the models placed at ``node_ids``."""
        own = np.bincount(self.row_of[node_ids], minlength=len(self.rows) + 1)
        return own @ self.up

    def own_counts(self, node_ids: np.ndarray) -> dict[int, int]:
        """Node id → models placed exactly there (what ``taxonomy_tree`` takes)."""
        own = np.bincount(self.row_of[node_ids], minlength=len(self.rows) + 1)
        return {self.rows[r][0]: int(own[r]) for r in np.flatnonzero(own[: len(self.rows)])}

    def json(self, counts: np.ndarray) -> bytes:
        """``[n.as_dict(prune=True) for n in taxonomy_tree(...) if n.count]`` as JSON
        (the last JSON_MEMO_MAX answers kept: the same counts recur across requests)."""
        key = counts.tobytes()
        done = self._json.get(key)
        if done is None:
            if len(self._json) >= JSON_MEMO_MAX:
                self._json.clear()
            done = self._json[key] = self._render(counts)
        return done

    def _render(self, counts: np.ndarray) -> bytes:
        heads, children = self.heads, self.children

        def node(r: int) -> bytes:
            kids = b",".join([node(c) for c in children[r] if counts[c]])
            return heads[r] + str(int(counts[r])).encode() + b',"children":[' + kids + b"]}"

        return b"[" + b",".join([node(r) for r in self.roots if counts[r]]) + b"]"
