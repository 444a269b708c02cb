"""The list answer's facets, joined from ready node bytes, equal the trees' JSON."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import AnonymousUser

from catalog.api.views import _facets, _facets_json
from catalog.selectors.documents import json_bytes
from catalog.selectors.search import SearchParams, model_search

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue(make_model: Any) -> None:
    make_model("Encoder", modality="text/natural-language/english", result="embedding/sentence", precision=None)
    make_model("Bird photos", modality="image/photo/rgb", domain="science/biology/ebird", precision=0.95)
    make_model("X-ray", modality="image/medical/x-ray", result="classification/binary", precision=0.7)
    make_model("Churn", modality="tabular/numeric", domain="business/retail", precision=0.85, visibility="private")
    make_model("Fraud detector", modality="tabular/numeric", domain="business/finance", summary="card fraud")


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"modality": "image"},
        {"modality": "image/photo", "domain": "science"},
        {"q": "fraud"},
        {"q": "nothing like this here"},
        {"sort": "precision"},
        {"team": "no-such-team"},
    ],
)
def test_facets_json_is_the_trees_json(catalogue: None, params: dict[str, Any]) -> None:
    result = model_search(user=AnonymousUser(), params=SearchParams(**params))
    assert _facets_json(result) == json_bytes(_facets(result))


@pytest.mark.parametrize("sort", ["newest", "precision", "relevance"])
def test_result_order_is_the_sort_over_the_matches(catalogue: None, sort: str) -> None:
    result = model_search(user=AnonymousUser(), params=SearchParams(modality="image", sort=sort))
    index = result.index
    pos = index.positions(result.ids)
    if sort == "precision":
        key = (-index.ids[pos], -np.nan_to_num(index.precision[pos], nan=-1.0))
    else:
        key = (-index.ids[pos], -index.created[pos])
    assert list(result.ids) == list(index.ids[pos][np.lexsort(key)])
    assert len(result.ids) == 2


def test_equal_result_sets_share_their_counts_until_a_write(catalogue: None, make_model: Any) -> None:
    """Counts are kept per generation by the result set: another order of the
    same set reuses them, another set or a new generation counts again."""
    first = model_search(user=AnonymousUser(), params=SearchParams(modality="image"))
    again = model_search(user=AnonymousUser(), params=SearchParams(modality="image", sort="precision"))
    assert again.facts is first.facts
    assert _facets_json(again) is _facets_json(first)  # made once for the set
    assert _facets_json(again) == json_bytes(_facets(again))
    other = model_search(user=AnonymousUser(), params=SearchParams(modality="tabular"))
    assert other.facts is not first.facts
    assert _facets_json(other) == json_bytes(_facets(other))
    make_model("Pet photos", modality="image/photo/rgb", domain="science/biology/ebird")
    after = model_search(user=AnonymousUser(), params=SearchParams(modality="image"))
    assert after.facts is not first.facts
    assert after.total == first.total + 1
    assert _facets_json(after) == json_bytes(_facets(after))
    assert {v["path"]: v["count"] for v in _facets(after)["domain"]}["science"] == 2
