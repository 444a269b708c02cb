"""API defects a new user met: pagination past the end, relative job URLs,
re-upload status, the job log, synthetic entries without files, missing blobs."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

import pytest
from rest_framework.test import APIClient

from catalog.models import FineTuneJob, RegisteredModel, Variant, VariantStatus
from catalog.services.synth import catalog_synth
from catalog.storage import artifact_key, artifact_put, artifact_storage
from tests.catalog.api.tokens import client_for

pytestmark = pytest.mark.django_db


def test_a_page_past_the_last_answers_404(make_model: Any) -> None:
    for i in range(5):
        make_model(f"Model {i}")
    c = APIClient()
    last = c.get("/api/v1/models/", {"page_size": 2, "page": 3})
    assert last.status_code == 200
    body = last.json()
    assert (body["count"], body["page"], body["pages"], len(body["results"])) == (5, 3, 3, 1)
    assert body["next"] is None
    assert body["previous"].startswith("http://testserver/api/v1/models/?")
    assert "page=2" in body["previous"]
    assert set(body["facets"]) == {"modality", "result", "domain", "team", "license", "tag"}
    past = c.get("/api/v1/models/", {"page_size": 2, "page": 999})
    assert past.status_code == 404
    assert past.json()["code"] == "page_not_found"
    assert "last page (3)" in past.json()["detail"]
    assert "previous" not in past.json()
    empty = c.get("/api/v1/models/", {"q": "zzzz-nothing-matches"})
    assert empty.status_code == 200
    assert (empty.json()["count"], empty.json()["pages"], empty.json()["previous"]) == (0, 1, None)


@pytest.fixture
def alice(make_team: Any, make_user: Any) -> APIClient:
    return client_for(make_user("alice", make_team("Team A")))


def upload(client: APIClient, data: bytes) -> Any:
    f = io.BytesIO(data)
    f.name = "tickets.csv"
    return client.post("/api/v1/datasets/", {"file": f, "name": "Tickets"}, format="multipart")


def test_job_urls_are_absolute_and_the_job_api_returns_the_log(
    alice: APIClient, tiny_encoder: Any, tickets_csv: bytes
) -> None:
    first = upload(alice, tickets_csv)
    assert first.status_code == 201
    assert first.json()["created"] is True
    again = upload(alice, tickets_csv)  # idempotent by sha256: the same version, 200
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["id"] == first.json()["id"]
    response = alice.post(
        "/api/v1/finetune-jobs/",
        {"base": "tiny-encoder", "dataset": first.json()["id"], "name": "Router"},
        format="json",
    )
    assert response.status_code == 201
    url = response.json()["url"]
    assert url == f"http://testserver/api/v1/finetune-jobs/{response.json()['id']}/"
    assert response["Location"] == url
    job = FineTuneJob.objects.get(pk=response.json()["id"])
    job.log += "".join(f"line {i}\n" for i in range(500))
    job.save(update_fields=["log"])
    body = alice.get(url).json()
    assert body["url"] == url
    assert body["log_total_lines"] == 501
    assert body["log_truncated"] is True
    assert body["log"].splitlines() == [f"line {i}" for i in range(300, 500)]  # the default tail: 200 lines
    whole = alice.get(url, {"log_lines": 5000}).json()
    assert whole["log_truncated"] is False
    assert whole["log"].startswith(job.log.splitlines()[0])
    assert alice.get(url, {"log_lines": 3}).json()["log"] == "line 497\nline 498\nline 499\n"
    assert alice.get(url, {"log_lines": -1}).status_code == 400
    cancelled = alice.post(f"{url}cancel/").json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["url"] == url


def read_bundle(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_synthetic_served_variants_have_real_files(taxonomy: None) -> None:
    catalog_synth(count=3, embed=False)
    variants = Variant.objects.filter(version__registered_model__slug__startswith="synth-")
    assert variants.count() == 6
    c = APIClient()
    for variant in variants.filter(version__registered_model__visibility="internal"):
        assert variant.status == VariantStatus.SERVED
        response = c.get(f"/api/v1/variants/{variant.pk}/download")
        assert response.status_code == 200
        data = b"".join(response.streaming_content)  # type: ignore[attr-defined]
        assert hashlib.sha256(data).hexdigest() == variant.sha256
        assert len(data) == variant.size
        members = read_bundle(data)
        manifest = json.loads(members["manifest.json"])
        assert set(members) == {"manifest.json", *manifest["files"]}
        for name, entry in manifest["files"].items():
            assert hashlib.sha256(members[name]).hexdigest() == entry["sha256"]


def test_a_served_variant_whose_file_is_missing_answers_410(make_model: Any) -> None:
    model = make_model("Router")
    stored = artifact_put(io.BytesIO(b"bundle bytes"))
    variant = Variant.objects.create(
        version=model.latest_version,
        name="onnx-fp32",
        format="onnx",
        precision="fp32",
        runtime="onnxruntime",
        status=VariantStatus.SERVED,
        sha256=stored.sha256,
        size=stored.size,
    )
    artifact_storage().delete(artifact_key(stored.sha256))
    c = APIClient()
    for response in (
        c.get(f"/api/v1/variants/{variant.pk}/download"),
        c.get(f"/api/v1/variants/{variant.pk}/download", HTTP_RANGE="bytes=2-5"),
    ):
        assert response.status_code == 410
        assert response.json()["code"] == "file_missing"
        assert "router v1 onnx-fp32" in response.json()["detail"]
    head = c.head(f"/api/v1/variants/{variant.pk}/download")
    assert head.status_code == 410
    variant.refresh_from_db()
    assert variant.download_count == 0


def test_resolve_accepts_a_format_constraint(make_model: Any) -> None:
    make_model("Router", variants=[{"precision": "fp32"}])
    assert RegisteredModel.objects.filter(slug="router").exists()
    response = APIClient().get("/api/v1/models/router/resolve", {"format": "onnx"})
    assert response.status_code == 200, response.json()
    missing = APIClient().get("/api/v1/models/router/resolve", {"format": "tflite"})
    assert missing.status_code == 404
    assert missing.json()["code"] == "no_variant"
    assert missing.json()["constraints"] == {"format": "tflite"}


def test_an_empty_dataset_file_is_a_422_and_empty_query_values_are_not_omitted(
    alice: APIClient, make_model: Any
) -> None:
    response = upload(alice, b"")
    assert response.status_code == 422
    assert response.json()["errors"] == {"file": ["the file is empty"]}
    make_model("Router")
    # `version=` is not an integer (the schema says so); DRF's form reading would have ignored it.
    assert APIClient().get("/api/v1/models/router/resolve?version=").status_code == 400


def test_a_number_where_a_string_is_promised_is_refused(make_team: Any, make_user: Any, taxonomy: None) -> None:
    from tests.catalog.api.tokens import client_for

    client = client_for(make_user("carol", make_team("Team C")))
    response = client.post("/api/v1/models/", {"name": 2.5, "summary": 1}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"name", "summary"}
    assert client.post("/api/v1/models/", {"name": "Real name"}, format="json").status_code == 201
