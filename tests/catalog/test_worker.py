"""End to end through a real Celery worker process, on whatever the suite runs
on: SQLite + the filesystem broker, or PostgreSQL + Redis (CI)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from catalog.models import FineTuneJob, JobStatus, ModelVersion
from catalog.services.tokens import api_token_create
from tests.worker_process import Worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def alice(make_team: Any, make_user: Any) -> APIClient:
    client = APIClient()
    user = make_user("alice", make_team("Team A"))
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user, name='test')}")
    return client


@pytest.fixture
def workers(tmp_path: Path, artifact_store: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def start_worker(workers: list[Worker], tmp_path: Path, artifact_store: Path) -> Worker:
    w = Worker(tmp_path / f"worker-{len(workers)}.log", artifact_store, {"FINETUNE_STALE_AFTER_S": "5"}).start()
    workers.append(w)
    return w


def submit(client: APIClient, data: bytes, hyperparameters: dict[str, Any]) -> int:
    f = io.BytesIO(data)
    f.name = "tickets.csv"
    dataset = client.post("/api/v1/datasets/", {"file": f}, format="multipart").json()["id"]
    response = client.post(
        "/api/v1/finetune-jobs/",
        {"base": "tiny-encoder", "dataset": dataset, "name": "Ticket router", "hyperparameters": hyperparameters},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return int(response.json()["id"])


def job(client: APIClient, job_id: int) -> dict[str, Any]:
    return client.get(f"/api/v1/finetune-jobs/{job_id}/").json()


def test_a_job_runs_on_a_worker_with_progress_metrics_and_lineage(
    alice: APIClient,
    tiny_encoder: ModelVersion,
    tickets_csv: bytes,
    workers: list[Worker],
    tmp_path: Path,
    artifact_store: Path,
) -> None:
    worker = start_worker(workers, tmp_path, artifact_store)
    job_id = submit(alice, tickets_csv, {"epochs": 40, "learning_rate": 0.05, "batch_size": 8})
    progress_seen = set()

    def finished() -> bool:
        body = job(alice, job_id)
        progress_seen.add(body["progress"])
        return body["status"] in ("succeeded", "failed")

    wait_for(finished, 120, "the job to finish", worker)
    body = job(alice, job_id)
    assert body["status"] == "succeeded", body["error"]
    assert len(progress_seen) >= 3  # it moved while we watched
    assert body["metrics"]["macro_precision"] > 0
    assert body["result"]["model"] == "ticket-router"
    assert len(body["loss_history"]) > 10
    version = ModelVersion.objects.get(registered_model__slug="ticket-router")
    assert (version.base_version_id, version.finetune_job.pk) == (tiny_encoder.pk, job_id)


def test_a_job_survives_its_worker_being_killed(
    alice: APIClient,
    tiny_encoder: ModelVersion,
    tickets_csv: bytes,
    workers: list[Worker],
    tmp_path: Path,
    artifact_store: Path,
) -> None:
    first = start_worker(workers, tmp_path, artifact_store)
    job_id = submit(alice, tickets_csv, {"epochs": 60, "unfreeze_layers": 1, "batch_size": 8})
    wait_for(lambda: job(alice, job_id)["progress"] > 0.35, 120, "training to get going", first)
    first.kill()
    assert job(alice, job_id)["status"] == "running"
    time.sleep(5.5)  # the heartbeat goes stale
    second = start_worker(workers, tmp_path, artifact_store)
    wait_for(lambda: job(alice, job_id)["status"] in ("succeeded", "failed"), 180, "the job to finish", second)
    body = job(alice, job_id)
    assert body["status"] == "succeeded", body["error"]
    assert body["attempts"] == 2
    assert ModelVersion.objects.filter(registered_model__slug="ticket-router").count() == 1
    assert FineTuneJob.objects.get(pk=job_id).result_version is not None


def test_cancel_stops_a_running_job(
    alice: APIClient,
    tiny_encoder: ModelVersion,
    tickets_csv: bytes,
    workers: list[Worker],
    tmp_path: Path,
    artifact_store: Path,
) -> None:
    worker = start_worker(workers, tmp_path, artifact_store)
    job_id = submit(alice, tickets_csv, {"epochs": 200, "unfreeze_layers": 1, "batch_size": 4})
    wait_for(lambda: job(alice, job_id)["progress"] > 0.3, 120, "training to get going", worker)
    assert alice.post(f"/api/v1/finetune-jobs/{job_id}/cancel/").status_code == 200
    wait_for(lambda: job(alice, job_id)["status"] == JobStatus.CANCELLED, 30, "the job to stop", worker)
    assert job(alice, job_id)["progress"] < 0.9
    assert not ModelVersion.objects.filter(registered_model__slug="ticket-router").exists()


def test_a_ready_version_is_compiled_on_the_compile_queue_and_served(
    alice: APIClient,
    tiny_encoder: ModelVersion,
    workers: list[Worker],
    tmp_path: Path,
    artifact_store: Path,
) -> None:
    import hashlib

    from catalog.models import Variant
    from tests.conftest_data import clear_tickets_csv

    w = Worker(tmp_path / "worker-compile.log", artifact_store, {"COMPILE_ON_READY": "1"}).start()
    workers.append(w)
    job_id = submit(alice, clear_tickets_csv(), {"epochs": 40, "learning_rate": 0.05})
    wait_for(lambda: job(alice, job_id)["status"] in ("succeeded", "failed"), 120, "the job to finish", w)
    assert job(alice, job_id)["status"] == "succeeded"
    version = ModelVersion.objects.get(registered_model__slug="ticket-router")
    # Pending rows appear when the compile starts; wait for all five to be built.
    wait_for(
        lambda: Variant.objects.filter(version=version).exclude(status="pending").count() == 5, 180, "the variants", w
    )
    statuses = dict(Variant.objects.filter(version=version).values_list("name", "status"))
    assert statuses["onnx-fp32"] == "served"
    assert statuses["onnx-fp16-cuda"] == "skipped"
    resolved = alice.get("/api/v1/models/ticket-router/resolve", {"precision": "fp32"}).json()
    response = alice.get(f"/api/v1/variants/{resolved['id']}/download")
    assert response.status_code == 200
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == resolved["sha256"]
