from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection

from catalog.models import Visibility
from catalog.selectors.search import SearchParams, model_search
from catalog.selectors.taxonomy import TreeNode, UnknownTaxonomyNode

pytestmark = pytest.mark.django_db


def slugs(result: Any) -> set[str]:
    return {m.slug for m in result.rows()}


def search(user: Any = None, **kw: Any) -> Any:
    return model_search(user=user or AnonymousUser(), params=SearchParams(**kw))


def find(nodes: list[TreeNode], path: str) -> TreeNode:
    for node in nodes:
        if node.path == path:
            return node
        if path.startswith(node.path + "/"):
            return find(node.children, path)
    raise AssertionError(path)


@pytest.fixture
def catalogue(make_model: Any) -> dict[str, Any]:
    return {
        "encoder": make_model(
            "Sentence encoder", modality="text/natural-language/english", result="embedding/sentence", precision=None
        ),
        "photo": make_model(
            "Bird photo classifier",
            modality="image/photo/rgb",
            result="classification/multiclass",
            domain="science/biology/ebird",
            precision=0.95,
        ),
        "xray": make_model(
            "Chest x-ray triage",
            modality="image/medical/x-ray",
            result="classification/binary",
            domain="science/medicine/radiology",
            precision=0.7,
        ),
        "tabular": make_model(
            "Churn scorer",
            modality="tabular/numeric",
            result="classification/binary",
            domain="business/retail",
            precision=0.85,
        ),
    }


def test_tree_filter_matches_whole_subtree(catalogue: dict[str, Any]) -> None:
    assert slugs(search(modality="image")) == {"bird-photo-classifier", "chest-x-ray-triage"}
    assert slugs(search(modality="image/photo")) == {"bird-photo-classifier"}
    assert slugs(search(modality="text")) == {"sentence-encoder"}
    assert slugs(search(result="classification")) == {"bird-photo-classifier", "chest-x-ray-triage", "churn-scorer"}
    assert slugs(search(domain="science")) == {"bird-photo-classifier", "chest-x-ray-triage"}


def test_a_path_prefix_that_is_not_a_subtree_does_not_match(make_model: Any) -> None:
    from catalog.models import Modality

    # A root whose slug merely starts with "image" is not under "image".
    Modality.objects.create(slug="imagery", name="Imagery")
    make_model("Photo", modality="image/photo")
    make_model("Imagery model", modality="imagery")
    assert slugs(search(modality="image")) == {"photo"}
    with pytest.raises(UnknownTaxonomyNode):
        search(modality="image/pho")


def test_facet_counts_roll_up_to_parents(catalogue: dict[str, Any]) -> None:
    result = search()
    assert result.total == 4
    image = find(result.facets["modality"], "image")
    assert image.count == 2
    assert find(result.facets["modality"], "image/photo").count == 1
    assert find(result.facets["modality"], "image/photo/rgb").count == 1
    classification = find(result.facets["result"], "classification")
    assert classification.count == 3
    assert all(classification.count >= child.count for child in classification.children)
    assert find(result.facets["result"], "classification/binary").count == 2
    assert find(result.facets["domain"], "science").count == 2


def test_facets_follow_the_current_filter(catalogue: dict[str, Any]) -> None:
    result = search(result="classification/binary")
    assert result.total == 2
    assert find(result.facets["modality"], "image").count == 1
    assert find(result.facets["modality"], "tabular").count == 1
    assert find(result.facets["modality"], "text").count == 0


def test_min_precision_and_sort(catalogue: dict[str, Any]) -> None:
    assert slugs(search(min_precision=0.8)) == {"bird-photo-classifier", "churn-scorer"}
    ordered = [m.slug for m in search(sort="precision").rows()]
    assert ordered[:3] == ["bird-photo-classifier", "churn-scorer", "chest-x-ray-triage"]
    assert ordered[-1] == "sentence-encoder"  # no precision sorts last


def test_free_text_matches_name_summary_and_labels(make_model: Any) -> None:
    make_model("Toxicity detector", summary="Flags abusive comments", labels=["toxic", "clean"])
    make_model("Invoice parser", summary="Extracts totals from scanned invoices")
    assert slugs(search(q="toxicity")) == {"toxicity-detector"}
    assert slugs(search(q="abusive")) == {"toxicity-detector"}
    assert slugs(search(q="invoices")) == {"invoice-parser"}
    assert slugs(search(q="toxic comments")) == {"toxicity-detector"}
    assert slugs(search(q="toxicity invoices")) == set()
    # A word still being typed matches (live search).
    assert slugs(search(q="invoi")) == {"invoice-parser"}


def test_relevance_puts_name_hits_first(make_model: Any) -> None:
    make_model("Generic model", summary="Mentions sentiment in passing")
    make_model("Sentiment classifier", summary="Positive or negative")
    assert [m.slug for m in search(q="sentiment").rows()][0] == "sentiment-classifier"


def test_variant_filters_need_one_variant_meeting_every_bound(make_model: Any) -> None:
    make_model("Fast int8", variants=[{"precision": "int8", "p95": 4.0}, {"precision": "fp32", "p95": 30.0}])
    make_model("Slow int8", variants=[{"precision": "int8", "p95": 40.0}, {"precision": "fp32", "p95": 5.0}])
    make_model("Rejected", variants=[{"precision": "int8", "p95": 1.0, "status": "rejected"}])
    assert slugs(search(precision="int8")) == {"fast-int8", "slow-int8"}
    assert slugs(search(precision="int8", max_p95_ms=10)) == {"fast-int8"}
    assert slugs(search(max_p95_ms=10)) == {"fast-int8", "slow-int8"}
    assert slugs(search(runtime="torch")) == set()


def test_private_models_are_seen_by_their_team_only(make_model: Any, make_team: Any, make_user: Any) -> None:
    team_a, team_b = make_team("Team A"), make_team("Team B")
    make_model("Secret A", team=team_a, visibility=Visibility.PRIVATE)
    make_model("Open A", team=team_a)
    alice, bob = make_user("alice", team_a), make_user("bob", team_b)
    assert slugs(search(alice)) == {"secret-a", "open-a"}
    assert slugs(search(bob)) == {"open-a"}
    assert slugs(search(AnonymousUser())) == {"open-a"}
    # Facet counts never leak the private model either.
    assert search(bob).total == 1
    assert find(search(bob).facets["modality"], "text").count == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL full-text search")
def test_postgres_uses_a_gin_indexed_tsvector(make_model: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'catalog_modelsearch' AND indexdef ILIKE '%gin%'"
        )
        assert "document" in cursor.fetchone()[0]
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT model_id FROM catalog_modelsearch WHERE document @@ to_tsquery('english', 'bird:*')"
        )
        plan = " ".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET enable_seqscan = on")
    assert "catalog_modelsearch_gin" in plan


def test_the_facet_index_follows_every_write(make_model: Any) -> None:
    from catalog.models import RegisteredModel
    from catalog.signals import catalog_changed

    make_model("First")
    assert slugs(search()) == {"first"}
    make_model("Second", modality="image/photo")
    assert slugs(search()) == {"first", "second"}
    assert slugs(search(modality="image")) == {"second"}
    # A write from another process (no signal here) that marks the catalogue changed.
    RegisteredModel.objects.filter(slug="first").update(visibility=Visibility.PRIVATE)
    catalog_changed()
    assert slugs(search()) == {"second"}
    RegisteredModel.objects.filter(slug="second").delete()
    assert slugs(search()) == set()


@pytest.mark.parametrize("q", ["%", "a", "🙂", " ?! ", "🚀🚀"])
def test_a_query_with_nothing_searchable_is_rejected(q: str) -> None:
    from catalog.selectors.search import query_problem

    assert query_problem(q)


@pytest.mark.parametrize("q", ["", "ai", "tumor", "classify emails by department", "x-ray", "5G"])
def test_a_searchable_query_is_accepted(q: str) -> None:
    from catalog.selectors.search import query_problem

    assert query_problem(q) is None
