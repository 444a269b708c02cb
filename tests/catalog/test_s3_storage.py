"""The artifact store and downloads on S3: django-storages + boto3 against
moto's standalone server on loopback."""

from __future__ import annotations

import hashlib
import io
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from catalog.models import Variant, VariantStatus
from catalog.storage import artifact_exists, artifact_local_path, artifact_materialize, artifact_open, artifact_put

pytestmark = pytest.mark.django_db
BUCKET = "model-library-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(settings: Any, moto_endpoint: str) -> str:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    if BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BUCKET)
    settings.ARTIFACT_STORAGE = "s3"
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": moto_endpoint,
                "region_name": "us-east-1",
                "access_key": "testing",
                "secret_key": "testing",
                "file_overwrite": True,
                "querystring_expire": 300,
            },
        },
    }
    return moto_endpoint


def test_content_addressed_store_on_s3(s3: str, tmp_path: Any) -> None:
    data = os.urandom(50_000)
    stored = artifact_put(io.BytesIO(data))
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert artifact_exists(stored.sha256)
    assert artifact_local_path(stored.sha256) is None
    with artifact_open(stored.sha256) as fh:
        assert fh.read() == data
    out = artifact_materialize([{"name": "model.safetensors", "sha256": stored.sha256}], tmp_path / "m")
    assert (out / "model.safetensors").read_bytes() == data


def test_download_redirects_to_a_presigned_url(s3: str, make_model: Any, settings: Any) -> None:
    import requests
    from rest_framework.test import APIClient

    data = os.urandom(120_000)
    stored = artifact_put(io.BytesIO(data))
    variant = Variant.objects.create(
        version=make_model("Router").latest_version,
        name="onnx-int8",
        format="onnx",
        precision="int8",
        runtime="onnxruntime",
        status=VariantStatus.SERVED,
        sha256=stored.sha256,
        size=stored.size,
    )
    response = APIClient().get(f"/api/v1/variants/{variant.pk}/download")
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(s3)
    assert "Signature" in location
    fetched = requests.get(location, timeout=30)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == stored.sha256 == response["ETag"].strip('"')
    assert "attachment" in fetched.headers["Content-Disposition"]
    variant.refresh_from_db()
    assert variant.download_count == 1

    # With presigned URLs off the app streams from S3 itself, Range included.
    settings.ARTIFACT_PRESIGNED_DOWNLOADS = False
    ranged = APIClient().get(f"/api/v1/variants/{variant.pk}/download", HTTP_RANGE="bytes=100-199")
    assert ranged.status_code == 206
    assert b"".join(ranged.streaming_content) == data[100:200]
