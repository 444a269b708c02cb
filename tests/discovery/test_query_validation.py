"""A query with nothing searchable is refused (API 400, UI message), not read as "everything"."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("q", ["%", "a", "🙂"])
def test_the_api_refuses_it_with_the_shared_error_shape(make_model: Any, q: str) -> None:
    make_model("Churn scorer")
    response = Client().get("/api/v1/models/", {"q": q})
    # The API answers a well-formed but unusable value with 422 (catalog/api/errors.py).
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"detail", "code", "errors"}
    assert list(body["errors"]) == ["q"]
    assert "nothing to search for" in body["errors"]["q"][0]


@pytest.mark.parametrize("q", ["%", "a", "🙂"])
def test_the_page_says_so_and_lists_nothing(make_model: Any, q: str) -> None:
    make_model("Churn scorer")
    response = Client().get("/", {"q": q})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Nothing searched" in html
    assert "nothing to search for" in html
    assert "Churn scorer" not in html


def test_a_real_question_is_accepted(make_model: Any) -> None:
    make_model("Churn scorer")
    response = Client().get("/api/v1/models/", {"q": "churn"})
    assert response.status_code == 200
    assert [r["slug"] for r in response.json()["results"]] == ["churn-scorer"]
