"""The ready JSON of list rows and detail answers (catalog/selectors/documents.py)
is byte-for-byte what the serializers rendered by DRF's JSONRenderer give, for
every viewer, and a catalogue write is seen at once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient, APIRequestFactory

from catalog.api.serializers import ModelDetailSerializer, ModelSummarySerializer
from catalog.models import Alias, DatasetVersion, ModelVersion, RegisteredModel, Variant, Visibility
from catalog.services.registry import metrics_record
from catalog.signals import catalog_changed
from tests.catalog.api.tokens import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue(make_model: Any, make_team: Any, make_user: Any) -> dict[str, Any]:
    from catalog.models import Dataset

    team_a, team_b = make_team("Team A"), make_team("Team B")
    base = make_model("Secret encoder", team=team_b, visibility=Visibility.PRIVATE)
    child = make_model(
        "Ünïcode router \u2028 line",
        team=team_a,
        variants=[{"precision": "fp32"}, {"precision": "int8", "p95": 3.5}],
        summary='Quotes " and \\ backslashes',
    )
    plain = make_model("Unmeasured model", precision=None)
    dataset = Dataset.objects.create(team=team_b, name="tickets")
    dv = DatasetVersion.objects.create(dataset=dataset, sha256="ab" * 32, size=10, rows=42)
    ModelVersion.objects.filter(pk=child.latest_version_id).update(base_version=base.latest_version, dataset_version=dv)
    Alias.objects.create(registered_model=child, name="production", version=child.latest_version)
    metrics_record(version=child.latest_version, metrics={"macro_f1": 0.5}, evaluation_dataset="other")
    catalog_changed()
    return {
        "child": child,
        "plain": plain,
        "base": base,
        "a_user": make_user("alice", team_a),
        "b_user": make_user("bob", team_b),
        "nobody": make_user("carol"),
    }


def _expected_detail(slug: str, user: Any) -> bytes:
    from catalog.api.views import model_detail  # noqa: F401 - the route under test

    request = APIRequestFactory().get(f"/api/v1/models/{slug}/")
    request.user = user
    model = RegisteredModel.objects.get(slug=slug)
    from rest_framework.request import Request

    drf_request = Request(request)
    drf_request.user = user
    data = ModelDetailSerializer(model, context={"request": drf_request}).data
    return JSONRenderer().render(data)


@pytest.mark.parametrize("who", ["anonymous", "a_user", "b_user", "nobody", "admin"])
def test_the_detail_answer_is_the_serializers_byte_for_byte(
    who: str, catalogue: dict[str, Any], django_user_model: Any
) -> None:
    from django.contrib.auth.models import AnonymousUser

    if who == "anonymous":
        user, client = AnonymousUser(), APIClient()
    elif who == "admin":
        user = django_user_model.objects.create_superuser("root", password="pw-correct-horse")
        client = client_for(user)
    else:
        user = catalogue[who]
        client = client_for(user)
    for slug in (catalogue["child"].slug, catalogue["plain"].slug):
        for _ in range(2):  # built, then from the generation's cache
            response = client.get(f"/api/v1/models/{slug}/")
            assert response.status_code == 200
            assert response["Content-Type"] == "application/json"
            assert response.content == _expected_detail(slug, user)


def test_lineage_and_private_models_follow_the_viewer(catalogue: dict[str, Any]) -> None:
    slug = catalogue["child"].slug
    hidden = {"model": None, "version": None, "private": True}
    anon = APIClient().get(f"/api/v1/models/{slug}/").json()["versions"][0]["lineage"]
    assert anon == {"base": hidden, "dataset_version": {"id": None, "sha256": None, "rows": 42}}
    bob = client_for(catalogue["b_user"]).get(f"/api/v1/models/{slug}/").json()["versions"][0]["lineage"]
    assert bob["base"] == {"model": "secret-encoder", "version": 1, "private": False}
    assert bob["dataset_version"]["sha256"] == "ab" * 32
    # The private base itself: a 404 to others, byte-identical to a missing model.
    private = APIClient().get("/api/v1/models/secret-encoder/")
    missing = APIClient().get("/api/v1/models/no-such-model/")
    assert private.status_code == missing.status_code == 404
    assert private.content == missing.content
    assert client_for(catalogue["b_user"]).get("/api/v1/models/secret-encoder/").status_code == 200


def test_list_rows_are_the_serializers_byte_for_byte(catalogue: dict[str, Any]) -> None:
    from rest_framework.request import Request

    client = client_for(catalogue["b_user"])
    for query in ("", "?q=router", "?modality=text", "?page_size=1&page=2"):
        response = client.get(f"/api/v1/models/{query}")
        assert response.status_code == 200
        body = response.json()
        slugs = [row["slug"] for row in body["results"]]
        assert slugs, query
        request = Request(APIRequestFactory().get("/api/v1/models/"))
        models = {m.slug: m for m in RegisteredModel.objects.filter(slug__in=slugs)}
        expected = ModelSummarySerializer([models[s] for s in slugs], many=True, context={"request": request}).data
        rendered = JSONRenderer().render(expected)
        assert b'"results":' + rendered + b',"facets":' in response.content
    # Another team's private model is never a row.
    anon = APIClient().get("/api/v1/models/?page_size=100").json()
    assert "secret-encoder" not in [r["slug"] for r in anon["results"]]


def test_a_write_is_seen_at_once_and_downloads_are_never_stale(catalogue: dict[str, Any]) -> None:
    client = APIClient()
    slug = catalogue["child"].slug
    assert client.get(f"/api/v1/models/{slug}/").json()["name"].startswith("Ünïcode")
    model = RegisteredModel.objects.get(slug=slug)
    model.name = "Renamed router"
    model.save()
    assert client.get(f"/api/v1/models/{slug}/").json()["name"] == "Renamed router"
    rows = client.get("/api/v1/models/?q=renamed").json()["results"]
    assert [r["name"] for r in rows][:1] == ["Renamed router"]
    # Download counters are bumped with a bulk update (no new generation).
    variant = Variant.objects.filter(version__registered_model=model).order_by("name").first()
    assert variant is not None
    Variant.objects.filter(pk=variant.pk).update(download_count=7)
    variants = client.get(f"/api/v1/models/{slug}/").json()["versions"][0]["variants"]
    assert {v["name"]: v["download_count"] for v in variants}[variant.name] == 7


def test_the_browsable_api_still_renders(catalogue: dict[str, Any]) -> None:
    slug = catalogue["child"].slug
    for path in ("/api/v1/models/", f"/api/v1/models/{slug}/"):
        response = APIClient().get(path, HTTP_ACCEPT="text/html")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/html")
    body = json.loads(APIClient().get(f"/api/v1/models/{slug}/").content)
    assert body["aliases"] == {"production": 1}


def test_a_detail_document_is_built_in_five_queries(catalogue: dict[str, Any], django_assert_num_queries: Any) -> None:
    client = APIClient()
    assert client.get(f"/api/v1/models/{catalogue['plain'].slug}/").status_code == 200  # loads the index
    # The token, the versions with the model row, metrics, variants, aliases.
    with django_assert_num_queries(5):
        assert client.get(f"/api/v1/models/{catalogue['child'].slug}/").status_code == 200
    # Then the token and the download counters only.
    with django_assert_num_queries(2):
        assert client.get(f"/api/v1/models/{catalogue['child'].slug}/").status_code == 200


def test_rows_prebuilt_with_the_details_are_the_rows_a_page_builds(catalogue: dict[str, Any]) -> None:
    from catalog.selectors.documents import _details_build, list_rows
    from catalog.selectors.facet_index import facet_index

    index = facet_index()
    ids = [int(i) for i in index.ids]
    assert any(m.latest_version_id is not None for m in RegisteredModel.objects.all())
    built = list_rows(index, ids, "http://testserver")  # missing rows loaded on demand
    prebuilt: dict[int, Any] = {}
    _details_build(index, ids, prebuilt)
    assert set(prebuilt) == set(ids)
    index.documents["row"] = prebuilt
    index.documents.pop("row_bytes", None)
    assert list_rows(index, ids, "http://testserver") == built
