from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.db import transaction

from catalog.models import TaxonomyNode
from catalog.taxonomy import TAXONOMIES


@transaction.atomic
def taxonomy_load(*, path: Path) -> dict[str, int]:
    """Create or update the trees from a nested JSON file; returns node counts.

    Idempotent: nodes are matched by their slug path, so loading twice (or a
    file that renames a node) never duplicates.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    counts: dict[str, int] = {}
    for kind, roots in data.items():
        model = TAXONOMIES[kind]
        counts[kind] = _load_nodes(model, roots, parent=None)
    return counts


def _load_nodes(model: type[TaxonomyNode], nodes: list[dict[str, Any]], parent: TaxonomyNode | None) -> int:
    total = 0
    for spec in nodes:
        path = f"{parent.path}/{spec['slug']}" if parent else spec["slug"]
        node = model._default_manager.filter(path=path).first() or model(slug=spec["slug"], parent=parent)  # type: ignore[misc]
        node.name = spec["name"]
        node.description = spec.get("description", "")
        node.save()
        total += 1 + _load_nodes(model, spec.get("children", []), node)
    return total
