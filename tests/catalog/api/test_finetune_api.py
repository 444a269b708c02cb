from __future__ import annotations

import io
from typing import Any

import pytest
from rest_framework.test import APIClient

from catalog.models import FineTuneJob, JobStatus, ModelVersion, VersionStatus
from catalog.services.finetune import finetune_execute
from catalog.services.tokens import api_token_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(make_team: Any, make_user: Any) -> APIClient:
    user = make_user("alice", make_team("Team A"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user, name='test')}")
    return client


def upload(client: APIClient, data: bytes, **extra: str) -> Any:
    f = io.BytesIO(data)
    f.name = "tickets.csv"
    return client.post("/api/v1/datasets/", {"file": f, **extra}, format="multipart")


def test_dataset_upload_contract(alice: APIClient, tickets_csv: bytes, taxonomy: None) -> None:
    response = upload(alice, tickets_csv, name="Tickets")
    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"id", "sha256", "rows", "labels"}
    assert body["rows"] == 120
    again = upload(alice, tickets_csv, name="Tickets")
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    bad = upload(alice, b"sentence,label\nx,y\n")
    assert bad.status_code == 422
    assert bad.json()["code"] == "unprocessable"
    assert bad.json()["issues"][0]["column"] == "text"
    assert "no text column named 'text'" in bad.json()["issues"][0]["message"]
    assert "no text column named 'text'" in bad.json()["errors"]["file"][0]
    assert APIClient().post("/api/v1/datasets/", {}).status_code == 401


def test_finetune_job_end_to_end_in_process(
    alice: APIClient, tiny_encoder: ModelVersion, tickets_csv: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    dataset = upload(alice, tickets_csv).json()["id"]
    with django_capture_on_commit_callbacks() as callbacks:
        response = alice.post(
            "/api/v1/finetune-jobs/",
            {
                "base": "tiny-encoder",
                "dataset": dataset,
                "name": "Ticket router",
                "hyperparameters": {"epochs": 8, "learning_rate": 0.05},
                "min_precision": 0.0,
            },
            format="json",
        )
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "queued"
    assert len(callbacks) == 1  # enqueued on commit, not before
    job_id = response.json()["id"]
    finetune_execute(job_id=job_id)
    body = alice.get(f"/api/v1/finetune-jobs/{job_id}/").json()
    assert body["status"] == "succeeded", body["error"]
    assert body["progress"] == 1.0
    assert set(body["metrics"]) >= {
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "accuracy",
        "coverage",
        "precision_at_coverage",
    }
    assert body["result"] == {"model": "ticket-router", "version": 1, "status": "ready"}
    version = ModelVersion.objects.get(registered_model__slug="ticket-router")
    assert version.base_version == tiny_encoder
    assert version.dataset_version_id == dataset
    assert version.finetune_job.pk == job_id
    assert version.registered_model.result_kind.path == "classification/multiclass"
    assert version.registered_model.modality.path == "text/natural-language/english"
    # The dataset named no domain: "general", not the base model's (general/wikipedia).
    assert version.registered_model.domain.path == "general"
    assert version.metrics.get(name="macro_precision").evaluation_dataset_version_id == dataset
    assert version.code_version.startswith("runners.families.text_classifier@")
    # Running the same job again (a redelivered message) changes nothing.
    assert finetune_execute(job_id=job_id) is None
    assert ModelVersion.objects.filter(registered_model__slug="ticket-router").count() == 1


def test_the_quality_gate_keeps_a_weak_version_below_gate(
    alice: APIClient, tiny_encoder: ModelVersion, tickets_csv: bytes
) -> None:
    from django.core.exceptions import ValidationError

    from catalog.services.registry import alias_set

    dataset = upload(alice, tickets_csv).json()["id"]
    job_id = alice.post(
        "/api/v1/finetune-jobs/",
        {
            "base": "tiny-encoder",
            "dataset": dataset,
            "name": "Weak",
            "hyperparameters": {"epochs": 1},
            "min_precision": 0.999,
        },
        format="json",
    ).json()["id"]
    finetune_execute(job_id=job_id)
    version = FineTuneJob.objects.get(pk=job_id).result_version
    assert version.status == VersionStatus.BELOW_GATE
    with pytest.raises(ValidationError):
        alias_set(registered_model=version.registered_model, name="production", version=version)


@pytest.mark.parametrize(
    ("payload", "field", "status", "code"),
    [
        # Names of things that do not exist: well formed, not doable (422).
        ({"base": "nope"}, "base", 422, "unprocessable"),
        ({"dataset": 999999}, "dataset", 422, "unprocessable"),
        ({"name": "!!!"}, "name", 422, "unprocessable"),
        # Out of the schema's bounds (400).
        ({"hyperparameters": {"epochs": 0}}, "hyperparameters", 400, "invalid"),
        ({"min_precision": 2}, "min_precision", 400, "invalid"),
    ],
)
def test_bad_job_requests_are_refused(
    alice: APIClient,
    tiny_encoder: ModelVersion,
    tickets_csv: bytes,
    payload: dict[str, Any],
    field: str,
    status: int,
    code: str,
) -> None:
    dataset = upload(alice, tickets_csv).json()["id"]
    body = {"base": "tiny-encoder", "dataset": dataset, "name": "Router", **payload}
    response = alice.post("/api/v1/finetune-jobs/", body, format="json")
    assert response.status_code == status
    assert response.json()["code"] == code
    assert any(k == field or k.startswith(f"{field}.") for k in response.json()["errors"])
    assert FineTuneJob.objects.count() == 0


def test_a_non_text_base_is_refused(alice: APIClient, make_model: Any, tickets_csv: bytes) -> None:
    make_model("Digits")  # an mlp-classifier
    dataset = upload(alice, tickets_csv).json()["id"]
    response = alice.post("/api/v1/finetune-jobs/", {"base": "digits", "dataset": dataset, "name": "X"}, format="json")
    assert response.status_code == 422
    assert "fine-tuning needs one of" in response.json()["errors"]["base"][0]


def test_cancel_a_queued_job_and_other_teams_see_nothing(
    alice: APIClient, tiny_encoder: ModelVersion, tickets_csv: bytes, make_team: Any, make_user: Any
) -> None:
    dataset = upload(alice, tickets_csv).json()["id"]
    job_id = alice.post(
        "/api/v1/finetune-jobs/", {"base": "tiny-encoder", "dataset": dataset, "name": "R"}, format="json"
    ).json()["id"]
    bob = APIClient()
    bob.credentials(
        HTTP_AUTHORIZATION=f"Token {api_token_create(user=make_user('bob', make_team('Team B')), name='test')}"
    )
    assert bob.get(f"/api/v1/finetune-jobs/{job_id}/").status_code == 404
    assert bob.post(f"/api/v1/finetune-jobs/{job_id}/cancel/").status_code == 404
    assert alice.post(f"/api/v1/finetune-jobs/{job_id}/cancel/").json()["status"] == "cancelled"
    assert finetune_execute(job_id=job_id) is None  # a late delivery does not resurrect it
    assert FineTuneJob.objects.get(pk=job_id).status == JobStatus.CANCELLED


def test_a_failing_job_keeps_a_readable_reason(
    alice: APIClient, tiny_encoder: ModelVersion, tickets_csv: bytes, artifact_store: Any
) -> None:
    dataset = upload(alice, tickets_csv).json()["id"]
    job_id = alice.post(
        "/api/v1/finetune-jobs/", {"base": "tiny-encoder", "dataset": dataset, "name": "R"}, format="json"
    ).json()["id"]
    # The base weights vanish from the store before the worker runs.
    for entry in tiny_encoder.files:
        if entry["name"] == "model.safetensors":
            # stored whole or split (catalog/storage.py): remove what names it
            from catalog.storage import artifact_key, composite_key

            for key in (artifact_key(entry["sha256"]), composite_key(entry["sha256"])):
                (artifact_store / key).unlink(missing_ok=True)
    finetune_execute(job_id=job_id)
    body = alice.get(f"/api/v1/finetune-jobs/{job_id}/").json()
    assert body["status"] == "failed"
    assert "FileNotFoundError" in body["error"]
    assert body["result"] is None
