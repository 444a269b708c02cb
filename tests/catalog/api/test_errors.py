"""One JSON error shape under /api/: {"detail", "code"} (+ "errors" for validation)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import OperationalError
from django.test import Client, RequestFactory
from rest_framework.exceptions import Throttled
from rest_framework.test import APIClient
from rest_framework.views import APIView

from catalog.api import errors
from tests.catalog.api.tokens import client_for

pytestmark = pytest.mark.django_db


def assert_error_shape(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert set(body) <= {"detail", "code", "errors"}
    return body


@pytest.mark.parametrize("debug", [False, True])
def test_an_unknown_api_path_answers_json_404(settings: Any, debug: bool) -> None:
    settings.DEBUG = debug
    for path in ("/api/v1/nope", "/api/v1/nope/", "/api/v2/models/", "/api/v1/models/x/y/z/"):
        body = assert_error_shape(Client().get(path), 404, "not_found")
        assert "urlpatterns" not in body["detail"]


def test_outside_the_api_a_404_stays_a_page(settings: Any) -> None:
    settings.DEBUG = False
    response = Client().get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_resolve_has_one_route_without_a_trailing_slash(make_model: Any) -> None:
    make_model("Router")
    assert Client().get("/api/v1/models/router/resolve").status_code in (200, 404)
    assert_error_shape(Client().get("/api/v1/models/router/resolve/"), 404, "not_found")


def test_a_wrong_method_answers_json_405_with_allow(taxonomy: None) -> None:
    body = assert_error_shape(Client().post("/api/v1/taxonomy/modality/"), 405, "method_not_allowed")
    assert "POST" in body["detail"]
    response = Client().delete("/api/v1/variants/1/download")
    assert_error_shape(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


def test_a_server_error_answers_json_500(monkeypatch: pytest.MonkeyPatch, taxonomy: None, settings: Any) -> None:
    def boom(**kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("catalog.api.views.model_search", boom)
    for debug in (False, True):
        settings.DEBUG = debug
        client = Client(raise_request_exception=False)
        body = assert_error_shape(client.get("/api/v1/models/"), 500, "server_error")
        assert "a bug" not in body["detail"]  # no internals leak


def test_handler500_answers_json_only_under_the_api() -> None:
    request = RequestFactory().get("/api/v1/models/")
    assert_error_shape(errors.api_handler500(request), 500, "server_error")
    page = errors.api_handler500(RequestFactory().get("/models/"))
    assert page.status_code == 500
    assert not page["Content-Type"].startswith("application/json")


def test_a_busy_database_answers_503_with_retry_after(monkeypatch: pytest.MonkeyPatch, taxonomy: None) -> None:
    def locked(**kwargs: Any) -> None:
        raise OperationalError("database is locked")

    monkeypatch.setattr("catalog.api.views.model_search", locked)
    response = Client(raise_request_exception=False).get("/api/v1/models/")
    assert_error_shape(response, 503, "database_unavailable")
    assert int(response["Retry-After"]) >= 1


def test_a_busy_database_outside_drf_answers_503() -> None:
    """A plain Django view under /api/ (the middleware) and Django's 500 path (handler500)."""
    request = RequestFactory().get("/api/v1/anything")
    middleware = errors.ApiErrorMiddleware(lambda r: None)  # type: ignore[arg-type,return-value]
    response = middleware.process_exception(request, OperationalError("FATAL: sorry, too many clients already"))
    assert response is not None
    assert_error_shape(response, 503, "database_unavailable")
    assert response["Retry-After"]
    assert middleware.process_exception(RequestFactory().get("/models/"), OperationalError("x")) is None
    try:
        raise OperationalError("database is locked")
    except OperationalError:
        assert_error_shape(errors.api_handler500(request), 503, "database_unavailable")


def test_throttling_keeps_retry_after(monkeypatch: pytest.MonkeyPatch, taxonomy: None) -> None:
    def throttled(self: APIView, request: Any) -> None:
        raise Throttled(wait=7)

    monkeypatch.setattr(APIView, "check_throttles", throttled)
    response = APIClient().get("/api/v1/taxonomy/modality/")
    assert_error_shape(response, 429, "throttled")
    assert response["Retry-After"] == "7"


def test_authentication_errors(make_user: Any, make_team: Any, taxonomy: None) -> None:
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token not-a-real-key")
    assert_error_shape(bad.get("/api/v1/models/"), 401, "authentication_failed")
    response = APIClient().post("/api/v1/finetune-jobs/", {}, format="json")
    assert_error_shape(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Token")


def test_validation_errors_list_every_problem_by_field(make_user: Any, make_team: Any, taxonomy: None) -> None:
    response = APIClient().get("/api/v1/models/", {"min_precision": "high", "sort": "random", "page": "0"})
    body = assert_error_shape(response, 400, "invalid")
    assert set(body["errors"]) == {"min_precision", "sort", "page"}
    assert all(isinstance(m, str) for messages in body["errors"].values() for m in messages)
    assert "3 problems" in body["detail"]
    alice = client_for(make_user("alice", make_team("Team A")))
    response = alice.post(
        "/api/v1/finetune-jobs/",
        {
            "base": "nope",
            "dataset": 999,
            "name": "X",
            "hyperparameters": {"epochs": 0, "holdout": 0.9, "batch_size": "many", "dropout": 0.1},
        },
        format="json",
    )
    body = assert_error_shape(response, 400, "invalid")
    # Every problem at once, each under its own (dotted) field.
    assert {
        "hyperparameters.epochs",
        "hyperparameters.holdout",
        "hyperparameters.batch_size",
        "hyperparameters.dropout",
    } <= set(body["errors"])
    response = alice.post("/api/v1/finetune-jobs/", {"base": "nope", "dataset": 999, "name": "X"}, format="json")
    body = assert_error_shape(response, 422, "unprocessable")
    assert set(body["errors"]) == {"base", "dataset"}


def test_private_and_missing_models_answer_the_same_bytes(make_model: Any, make_team: Any) -> None:
    make_model("Secret", team=make_team("Team B"), visibility="private")
    for path in ("/api/v1/models/{}/", "/api/v1/models/{}/resolve"):
        hidden = APIClient().get(path.format("secret"))
        missing = APIClient().get(path.format("no-such-model"))
        assert hidden.status_code == missing.status_code == 404
        assert hidden.content == missing.content


def test_a_malformed_body_is_a_400_with_errors(make_user: Any, make_team: Any) -> None:
    alice = client_for(make_user("alice", make_team("Team A")))
    response = alice.post("/api/v1/finetune-jobs/", b"\x00{", content_type="application/json")
    body = assert_error_shape(response, 400, "parse_error")
    assert body["errors"] == {"non_field_errors": [body["detail"]]}
    response = alice.post("/api/v1/finetune-jobs/", b"<x/>", content_type="application/xml")
    assert_error_shape(response, 415, "unsupported_media_type")
