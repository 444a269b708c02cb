"""Evaluate catalogued classifiers on a team's dataset: request checks, the job
end to end through a real Celery worker, the leaderboard and the list API."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from catalog.models import Metric, Visibility
from tests.worker_process import Worker, wait_for


def _api(user: Any) -> APIClient:
    from catalog.services.tokens import api_token_create

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user, name='t')}")
    return client


def _upload(client: APIClient, data: bytes, name: str = "Our tickets") -> int:
    f = io.BytesIO(data)
    f.name = "tickets.csv"
    response = client.post("/api/v1/datasets/", {"file": f, "name": name}, format="multipart")
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


@pytest.mark.django_db
def test_a_request_that_cannot_run_is_refused(
    make_text_classifier: Callable[..., Any],
    make_model: Callable[..., Any],
    make_team: Callable[..., Any],
    make_user: Callable[..., Any],
    tickets_csv: bytes,
    settings: Any,
) -> None:
    settings.EVALUATION_MAX_MODELS = 2
    team_a, team_b = make_team("Team A"), make_team("Team B")
    alice, bob = _api(make_user("alice", team_a)), _api(make_user("bob", team_b))
    dataset = _upload(alice, tickets_csv)
    ok = make_text_classifier("Router one", team=team_a)
    secret = make_text_classifier("Secret router", team=team_b, visibility=Visibility.PRIVATE)
    narrow = make_text_classifier("Narrow", team=team_a, labels=["billing", "x", "y", "z"])
    tabular = make_model("Tabular", team=team_a)

    def post(client: APIClient, body: dict[str, Any]) -> Any:
        return client.post("/api/v1/evaluations/", body, format="json")

    too_many = post(alice, {"dataset": dataset, "models": [ok.slug, narrow.slug, tabular.slug]})
    assert too_many.status_code == 422
    assert "At most 2" in too_many.json()["errors"]["models"][0]
    # Team B's private model is "not visible", exactly like a slug that does not exist.
    hidden = post(alice, {"dataset": dataset, "models": [secret.slug]}).json()["errors"]["models"][0]
    missing = post(alice, {"dataset": dataset, "models": ["no-such"]}).json()["errors"]["models"][0]
    assert hidden.replace(secret.slug, "X") == missing.replace("no-such", "X")
    assert post(alice, {"dataset": dataset, "models": [tabular.slug]}).status_code == 422
    uncovered = post(alice, {"dataset": dataset, "models": [narrow.slug]})
    assert uncovered.status_code == 422
    assert "label mapping" in uncovered.json()["errors"]["models"][0]
    # Another team's dataset is not theirs to use.
    assert post(bob, {"dataset": dataset, "models": [ok.slug]}).status_code == 422
    assert post(alice, {"dataset": dataset, "models": [ok.slug]}).status_code == 201
    # A label mapping makes the narrow model usable.
    from catalog.models import DatasetVersion

    labels = DatasetVersion.objects.get(pk=dataset).labels
    mapping = {d: m for d, m in zip(labels, ["billing", "x", "y", "z"], strict=False)}
    mapped = post(alice, {"dataset": dataset, "models": [narrow.slug], "label_mappings": {narrow.slug: mapping}})
    assert mapped.status_code == 201, mapped.content


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_evaluation_runs_on_a_worker_and_ranks_models_on_a_leaderboard(
    make_text_classifier: Callable[..., Any],
    make_team: Callable[..., Any],
    make_user: Callable[..., Any],
    tickets_csv: bytes,
    workers: list[Worker],
    tmp_path: Path,
    artifact_store: Path,
) -> None:
    team_a, team_b = make_team("Team A"), make_team("Team B")
    user = make_user("alice", team_a)
    alice = _api(user)
    dataset = _upload(alice, tickets_csv)
    onnx = make_text_classifier("Router ONNX", team=team_a)
    torch_only = make_text_classifier("Router torch", team=team_a, variant=False, visibility=Visibility.PRIVATE)
    workers.append(Worker(tmp_path / "worker.log", artifact_store).start())
    created = alice.post(
        "/api/v1/evaluations/", {"dataset": dataset, "models": [onnx.slug, torch_only.slug]}, format="json"
    )
    assert created.status_code == 201, created.content
    evaluation_id = created.json()["id"]

    def finished() -> dict[str, Any] | None:
        body = alice.get("/api/v1/evaluations/").json()["results"][0]
        return body if body["status"] in ("succeeded", "failed") else None

    body = wait_for(finished, 180, "the evaluation to finish", workers[0])
    assert body["id"] == evaluation_id
    assert body["status"] == "succeeded", body
    assert body["progress"] == 1.0
    entries = {e["model"]: e for e in body["entries"]}
    assert entries[onnx.slug]["runner"] == "onnx-fp32"
    assert entries[torch_only.slug]["runner"].startswith("torch")
    for e in entries.values():
        assert e["status"] == "done", e["error"]
        for name in ("macro_precision", "macro_recall", "macro_f1", "coverage"):
            assert 0.0 <= e[name] <= 1.0
        assert e["latency_ms"] > 0
    # Same weights, two runners (ONNX fp32 and torch): the same figures.
    assert entries[onnx.slug]["macro_f1"] == pytest.approx(entries[torch_only.slug]["macro_f1"], abs=0.02)
    # The figures are metrics of each version, tied to the dataset version.
    metric = Metric.objects.get(version=onnx.latest_version, name="macro_f1", evaluation_dataset_version_id=dataset)
    assert metric.value == pytest.approx(entries[onnx.slug]["macro_f1"])
    assert metric.sample_count == 120

    page = Client()
    page.force_login(user)
    html = page.get(f"/datasets/{dataset}/leaderboard/").content.decode()
    assert html.count("<rect") == 2
    # The evaluation page's poll stops (htmx 286) once it is finished.
    live = page.get(f"/evaluations/{evaluation_id}/", HTTP_HX_REQUEST="true")
    assert live.status_code == 286
    assert 'data-status="succeeded"' in live.content.decode()
    assert "hx-trigger" not in live.content.decode()
    rows = [line for line in html.splitlines() if "data-slug=" in line and "<tr" in line]
    ranked = sorted(entries.values(), key=lambda e: -e["macro_f1"])
    assert [r.split('data-slug="')[1].split('"')[0] for r in rows] == [e["model"] for e in ranked]
    assert "Router ONNX" in page.get(f"/models/{onnx.slug}/").content.decode()
    assert "Our tickets" in page.get(f"/models/{onnx.slug}/").content.decode()  # the metric's dataset

    # Another team sees neither the leaderboard nor the evaluation.
    outsider = Client()
    outsider.force_login(make_user("bob", team_b))
    assert outsider.get(f"/datasets/{dataset}/leaderboard/").status_code == 404
    assert outsider.get(f"/evaluations/{evaluation_id}/").status_code == 404
    assert _api(make_user("carol", team_b)).get("/api/v1/evaluations/").json()["count"] == 0
