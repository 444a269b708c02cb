"""The three taxonomy trees, by the names the URL and API use."""

from __future__ import annotations

from .models import Domain, Modality, ResultKind, TaxonomyNode

TAXONOMIES: dict[str, type[TaxonomyNode]] = {
    "modality": Modality,
    "result": ResultKind,
    "domain": Domain,
}

# The RegisteredModel foreign key that points into each tree.
MODEL_FIELD = {"modality": "modality", "result": "result_kind", "domain": "domain"}
