from __future__ import annotations

from dataclasses import dataclass, field

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
