from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from catalog.models import ApiToken, Metric, ModelVersion, RegisteredModel, Team

pytestmark = pytest.mark.django_db


@pytest.mark.real_weights
def test_seed_demo_registers_a_real_searchable_catalogue() -> None:
    call_command("seed_demo", stdout=StringIO())
    client = APIClient()
    text = client.get("/api/v1/models/", {"modality": "text"}).json()
    assert {r["slug"] for r in text["results"]} == {"all-minilm-l6-v2", "support-ticket-router"}
    minilm = next(r for r in text["results"] if r["slug"] == "all-minilm-l6-v2")
    assert minilm["result"]["path"] == "embedding/sentence"
    assert minilm["latest_version"]["parameter_count"] == 22_713_728  # read from the weights
    image = client.get("/api/v1/models/", {"modality": "image"}).json()
    assert "all-minilm-l6-v2" not in {r["slug"] for r in image["results"]}
    classifiers = client.get("/api/v1/models/", {"result": "classification"}).json()
    assert {r["slug"] for r in classifiers["results"]} == {"digits-mlp", "breast-cancer-mlp", "support-ticket-router"}
    for hit in classifiers["results"]:
        metrics = hit["latest_version"]["metrics"]
        # Real measurements on a held-out split, not constants.
        assert 0.85 < metrics["macro_precision"] <= 1.0
        assert 0.5 < metrics["coverage"] <= 1.0
    assert Metric.objects.filter(name="macro_precision", sample_count__gt=100).count() == 3

    # The fine-tuned router came from a real job, with its lineage.
    router = ModelVersion.objects.get(registered_model__slug="support-ticket-router")
    assert router.base_version.registered_model.slug == "all-minilm-l6-v2"
    assert router.finetune_job.status == "succeeded"
    assert router.dataset_version.rows > 900

    # Every ready version has served variants with parity and latency.
    for version in ModelVersion.objects.filter(status="ready"):
        served = version.variants.filter(status="served")
        assert served.filter(name="onnx-fp32").exists(), version
        assert all(v.parity and v.latency_p95_ms and v.size for v in served), version
    assert router.variants.filter(precision="int8", status="served").exists()

    # Every demo entry has downloadable weights that hash to the recorded digest.
    for version in ModelVersion.objects.all():
        url = f"/models/{version.registered_model.slug}/v{version.version}/files/model.safetensors"
        response = client.get(url)
        assert response.status_code == 200
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "attachment" in response["Content-Disposition"]
        assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == version.weights_sha256

    # Idempotent.
    call_command("seed_demo", stdout=StringIO())
    assert RegisteredModel.objects.count() == 4
    assert ModelVersion.objects.count() == 4


def test_catalog_synth_spreads_entries_over_the_trees() -> None:
    call_command("catalog_synth", count=60, stdout=StringIO())
    assert RegisteredModel.objects.count() == 60
    assert RegisteredModel.objects.filter(latest_version__isnull=False, precision__isnull=False).count() == 60
    assert RegisteredModel.objects.values("modality").distinct().count() > 10
    assert RegisteredModel.objects.values("visibility").distinct().count() == 2
    call_command("catalog_synth", count=5, stdout=StringIO())
    assert RegisteredModel.objects.count() == 65


def test_create_api_token_creates_user_team_and_a_working_token(taxonomy: None) -> None:
    out = StringIO()
    call_command("create_api_token", "deploy-bot", "--team", "Vision Platform", stdout=out)
    token = out.getvalue().strip()
    assert token.startswith("mlk_")
    assert len(token) > 40
    assert Team.objects.get(slug="vision-platform").members.filter(username="deploy-bot").exists()
    # Keys are stored hashed, so a second call cannot show the first key again: it makes a new one.
    again = StringIO()
    call_command("create_api_token", "deploy-bot", stdout=again)
    assert again.getvalue().strip() != token
    assert token not in str(list(ApiToken.objects.values_list("key_sha256", "prefix")))
    for key in (token, again.getvalue().strip()):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        assert client.get("/api/v1/models/").status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}x")
    assert client.get("/api/v1/models/").status_code == 401
