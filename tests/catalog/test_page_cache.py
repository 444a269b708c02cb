"""The hot read routes: how many queries each costs (pinned), and the
whole-answer cache in front of them (catalog/page_cache.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue(make_model: Any, make_team: Any) -> dict[str, Any]:
    team_b = make_team("Team B")
    models = {
        "public": make_model("Sentiment classifier", variants=[{"precision": "fp32"}, {"precision": "int8"}]),
        "other": make_model("Digit reader", modality="image", result="classification/multiclass"),
        "private": make_model("Secret router", team=team_b, visibility="private"),
    }
    return models


HOT_ROUTES = [
    # (path, queries on a warm process with the whole-answer cache off)
    # The generation token only: rows are ready JSON (catalog/selectors/documents.py) and a
    # word's keyword matches are kept for the generation (catalog/selectors/search.py).
    ("/api/v1/models/?q=sentiment", 1),
    ("/api/v1/models/?modality=text", 1),
    # The token + the variants' download counters (the rest is the ready document).
    ("/api/v1/models/sentiment-classifier/", 2),
    ("/api/v1/models/sentiment-classifier/resolve", 4),
    ("/", 3),
    ("/models/sentiment-classifier/", 12),
]


@pytest.mark.parametrize(("path", "queries"), HOT_ROUTES)
def test_hot_routes_query_counts(
    path: str, queries: int, catalogue: dict[str, Any], django_assert_num_queries: Any
) -> None:
    """Each hot route costs a fixed number of queries (lists prefetch, no
    query per row): pinned here, so a change that adds one shows."""
    client = Client()
    assert client.get(path).status_code == 200  # loads the facet index once per catalogue generation
    with django_assert_num_queries(queries):
        assert client.get(path).status_code == 200


@pytest.fixture
def cache_on(settings: Any) -> None:
    from django.core.cache import caches

    settings.PAGE_CACHE_SECONDS = 60
    caches[settings.PAGE_CACHE_ALIAS].clear()


def test_an_api_answer_is_served_from_the_cache_until_the_catalogue_changes(
    cache_on: None, catalogue: dict[str, Any], make_model: Any, django_assert_num_queries: Any
) -> None:
    client = APIClient()
    first = client.get("/api/v1/models/?q=classifier")
    assert first.status_code == 200
    assert "X-Page-Cache" not in first
    with django_assert_num_queries(1):  # the catalogue's generation token, nothing else
        again = client.get("/api/v1/models/?q=classifier")
    assert again["X-Page-Cache"] == "hit"
    assert again.content == first.content
    make_model("Toxicity classifier")  # any catalogue write
    after = client.get("/api/v1/models/?q=classifier")
    assert "X-Page-Cache" not in after
    assert "toxicity-classifier" in [r["slug"] for r in after.json()["results"]]


def test_cached_answers_are_per_viewer(
    cache_on: None, catalogue: dict[str, Any], make_user: Any, make_team: Any
) -> None:
    """A private model seen by its team is never served to anyone else from the cache."""
    from catalog.services.tokens import api_token_create

    bob = make_user("bob", make_team("Team B"))
    team_client = APIClient()
    team_client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=bob, name='t')}")
    for _ in range(2):
        assert team_client.get("/api/v1/models/secret-router/").status_code == 200
        slugs = [r["slug"] for r in team_client.get("/api/v1/models/").json()["results"]]
        assert "secret-router" in slugs
    anonymous = APIClient()
    assert anonymous.get("/api/v1/models/secret-router/").status_code == 404
    assert "secret-router" not in [r["slug"] for r in anonymous.get("/api/v1/models/").json()["results"]]
    # A wrong token is refused as always, not answered from the cache.
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert wrong.get("/api/v1/models/").status_code == 401


def test_a_cached_page_carries_a_csrf_token_valid_for_its_client(cache_on: None, catalogue: dict[str, Any]) -> None:
    Client().get("/")  # fills the cache
    client = Client(enforce_csrf_checks=True)
    page = client.get("/")
    assert page["X-Page-Cache"] == "hit"
    token = re.search(r'"X-CSRFToken": "([A-Za-z0-9]+)"', page.content.decode())
    assert token is not None
    assert "csrftoken" in page.cookies  # this client's own secret, matching the token
    refused = Client(enforce_csrf_checks=True).post("/accounts/login/", {"username": "x", "password": "y"})
    assert refused.status_code == 403
    accepted = client.post(
        "/accounts/login/", {"username": "x", "password": "y", "csrfmiddlewaretoken": token.group(1)}
    )
    assert accepted.status_code == 200  # the form again (wrong password), not a CSRF failure


def test_a_signed_in_page_is_never_cached(
    cache_on: None, catalogue: dict[str, Any], make_user: Any, make_team: Any
) -> None:
    user = make_user("carol", make_team("Team A"))
    client = Client()
    client.force_login(user)
    for _ in range(2):
        page = client.get("/")
        assert "X-Page-Cache" not in page
        assert "carol" in page.content.decode()
