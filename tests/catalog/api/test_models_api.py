from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from catalog.models import Visibility
from catalog.services.tokens import api_token_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> APIClient:
    return APIClient()


def token_client(user: Any) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user, name='test')}")
    return c


def test_list_has_results_and_rolled_up_facets(client: APIClient, make_model: Any) -> None:
    make_model("Encoder", modality="text/natural-language/english", result="embedding/sentence")
    make_model("Digits", modality="image/handwriting", result="classification/multiclass", precision=0.97)
    body = client.get("/api/v1/models/", {"modality": "text"}).json()
    assert body["count"] == 1
    hit = body["results"][0]
    assert hit["slug"] == "encoder"
    assert hit["modality"]["path"] == "text/natural-language/english"
    assert hit["result"]["path"] == "embedding/sentence"
    assert hit["latest_version"]["version"] == 1
    assert hit["latest_version"]["metrics"]["macro_precision"] == pytest.approx(0.9)
    image = client.get("/api/v1/models/", {"modality": "image"}).json()
    assert [r["slug"] for r in image["results"]] == ["digits"]
    everything = client.get("/api/v1/models/").json()
    text = next(n for n in everything["facets"]["modality"] if n["path"] == "text")
    assert text["count"] == 1
    assert all(text["count"] >= c["count"] for c in text["children"])
    assert {t["slug"] for t in everything["facets"]["team"]} == {"team-a"}


def test_pagination(client: APIClient, make_model: Any) -> None:
    for i in range(5):
        make_model(f"Model {i}")
    first = client.get("/api/v1/models/", {"page_size": 2, "sort": "newest"}).json()
    assert first["count"] == 5
    assert first["pages"] == 3
    assert len(first["results"]) == 2
    assert first["previous"] is None
    assert "page=2" in first["next"]
    last = client.get("/api/v1/models/", {"page_size": 2, "page": 3, "sort": "newest"}).json()
    assert [r["slug"] for r in last["results"]] == ["model-0"]
    assert last["next"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"min_precision": "high"}, "min_precision"),
        ({"min_precision": "1.5"}, "min_precision"),
        ({"sort": "random"}, "sort"),
        ({"page": "0"}, "page"),
    ],
)
def test_bad_parameters_get_a_400_with_a_json_reason(
    client: APIClient, taxonomy: None, params: dict[str, str], field: str
) -> None:
    response = client.get("/api/v1/models/", params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert field in body["errors"]
    assert field in body["detail"]


def test_an_unknown_taxonomy_path_is_a_422(client: APIClient, taxonomy: None) -> None:
    response = client.get("/api/v1/models/", {"modality": "no/such/node"})
    assert response.status_code == 422
    assert response.json()["code"] == "unprocessable"
    assert response.json()["errors"] == {"modality": ["No modality node has the path 'no/such/node'."]}


def test_private_models_by_token(make_model: Any, make_team: Any, make_user: Any, client: APIClient) -> None:
    team_a, team_b = make_team("Team A"), make_team("Team B")
    make_model("Secret", team=team_a, visibility=Visibility.PRIVATE)
    alice = token_client(make_user("alice", team_a))
    bob = token_client(make_user("bob", team_b))
    assert [r["slug"] for r in alice.get("/api/v1/models/").json()["results"]] == ["secret"]
    assert alice.get("/api/v1/models/secret/").status_code == 200
    for other in (bob, client):
        assert other.get("/api/v1/models/").json()["count"] == 0
        response = other.get("/api/v1/models/secret/")
        assert response.status_code == 404
        assert "detail" in response.json()


def test_a_wrong_token_is_refused(client: APIClient, taxonomy: None) -> None:
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/v1/models/")
    assert response.status_code == 401
    assert "detail" in response.json()


def test_detail_has_versions_metrics_aliases_and_variants(client: APIClient, make_model: Any) -> None:
    from catalog.services.registry import alias_set

    model = make_model("Detailed", variants=[{"precision": "int8", "p95": 3.0}])
    alias_set(registered_model=model, name="production", version=model.latest_version)
    body = client.get("/api/v1/models/detailed/").json()
    assert body["aliases"] == {"production": 1}
    (version,) = body["versions"]
    assert version["status"] == "ready"
    assert {m["name"] for m in version["metrics"]} == {"macro_precision", "coverage"}
    assert version["variants"][0]["precision"] == "int8"
    assert version["variants"][0]["latency_p95_ms"] == 3.0
    assert version["lineage"] == {"base": None, "dataset_version": None}


def test_taxonomy_trees(client: APIClient, taxonomy: None) -> None:
    body = client.get("/api/v1/taxonomy/modality/").json()
    image = next(n for n in body["nodes"] if n["path"] == "image")
    assert "image/photo" in {c["path"] for c in image["children"]}
    assert client.get("/api/v1/taxonomy/result/").status_code == 200
    assert client.get("/api/v1/taxonomy/colour/").status_code == 404


def test_openapi_schema_and_docs(client: APIClient) -> None:
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert "/api/v1/models/" in schema["paths"]
    names = {p["name"] for p in schema["paths"]["/api/v1/models/"]["get"]["parameters"]}
    assert {"q", "modality", "result", "domain", "team", "min_precision", "sort"} <= names
    assert client.get("/api/v1/docs/").status_code == 200
