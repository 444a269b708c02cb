"""What a client sees of a bundle (or version file) stored split into shared
tensor chunks: the same bytes, ETag, Content-Length, Range/If-Range/304/HEAD
answers as for a bundle stored whole; the pull CLI verifies and unpacks it and
onnxruntime runs the unpacked model; try-it unpacks it; the /hf/ routes serve a
split safetensors file; with S3 a split file is streamed, not redirected."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.test import Client

from catalog.models import Variant, VariantStatus
from catalog.storage import artifact_is_composite, artifact_put_path, chunk_key
from tests.catalog.api.test_deploy_api import body_of, download
from tests.catalog.test_s3_storage import moto_endpoint, s3  # noqa: F401 - fixtures
from tests.catalog.test_storage_split import ENCODER, TOKENIZER, make_bundle

pytestmark = pytest.mark.django_db

HEAD = np.random.default_rng(3).normal(size=(256, 2)).astype(np.float32)


@pytest.fixture
def split_variant(make_model: Any, tmp_path: Path) -> tuple[Variant, bytes]:
    bundle = make_bundle(tmp_path, "router", ENCODER, HEAD, TOKENIZER)
    stored = artifact_put_path(bundle, split=True)
    assert artifact_is_composite(stored.sha256)
    variant = Variant.objects.create(
        version=make_model("Router").latest_version,
        name="onnx-fp32",
        format="onnx",
        precision="fp32",
        runtime="onnxruntime",
        hardware="cpu",
        status=VariantStatus.SERVED,
        sha256=stored.sha256,
        size=stored.size,
        latency_p50_ms=2.0,
        latency_p95_ms=3.0,
    )
    return variant, bundle.read_bytes()


def test_full_download_of_a_split_bundle(split_variant: Any) -> None:
    variant, data = split_variant
    response = download(variant)
    assert response.status_code == 200
    assert body_of(response) == data
    assert response["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert int(response["Content-Length"]) == len(data)
    assert response["Content-Type"] == "application/x-tar"
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Disposition"] == 'attachment; filename="router-v1-onnx-fp32.tar"'
    variant.refresh_from_db()
    assert variant.download_count == 1


@pytest.mark.parametrize("header", ["bytes=0-99", "bytes=500-3000", "bytes=1000-270000", "bytes=100000-", "bytes=-700"])
def test_ranges_of_a_split_bundle(split_variant: Any, header: str) -> None:
    variant, data = split_variant
    first_s, last_s = header.removeprefix("bytes=").split("-")
    if not first_s:  # the last N bytes
        first, last = len(data) - int(last_s), len(data) - 1
    else:
        first, last = int(first_s), int(last_s) if last_s else len(data) - 1
    response = download(variant, Range=header)
    assert response.status_code == 206
    assert body_of(response) == data[first : last + 1]
    assert response["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
    assert int(response["Content-Length"]) == last - first + 1


def test_conditional_and_head_requests_of_a_split_bundle(split_variant: Any) -> None:
    variant, data = split_variant
    etag = f'"{variant.sha256}"'
    assert download(variant, **{"If-None-Match": etag}).status_code == 304
    stale = download(variant, Range="bytes=0-9", **{"If-Range": '"' + "0" * 64 + '"'})
    assert stale.status_code == 200
    assert body_of(stale) == data
    fresh = download(variant, Range="bytes=10-19", **{"If-Range": etag})
    assert fresh.status_code == 206
    assert body_of(fresh) == data[10:20]
    head = Client().head(f"/api/v1/variants/{variant.pk}/download")
    assert head.status_code == 200
    assert head.content == b""
    assert int(head["Content-Length"]) == len(data)
    assert head["ETag"] == etag
    assert download(variant, Range=f"bytes={len(data)}-").status_code == 416


def test_a_split_bundle_missing_a_chunk_is_a_410(split_variant: Any, artifact_store: Path) -> None:
    variant, _ = split_variant
    (artifact_store / chunk_key(hashlib.sha256(ENCODER.tobytes()).hexdigest())).unlink()
    response = download(variant)
    assert response.status_code == 410
    assert response.json()["code"] == "file_missing"
    assert Client().head(f"/api/v1/variants/{variant.pk}/download").status_code == 410


def test_try_it_unpacks_a_split_bundle(split_variant: Any, settings: Any, tmp_path: Path) -> None:
    from catalog.services.predict import _bundle_dir

    variant, data = split_variant
    settings.VAR_DIR = tmp_path / "var"
    directory = _bundle_dir(variant)
    assert (directory / "tokenizer.json").read_bytes() == TOKENIZER
    run_model(directory / "model.onnx")


def run_model(path: Path) -> None:
    import onnxruntime as ort

    x = np.random.default_rng(0).normal(size=(4, 256)).astype(np.float32)
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    logits = np.maximum(x @ ENCODER, 0) @ HEAD
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(got, expected / expected.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)


@pytest.mark.django_db(transaction=True)
def test_pull_verifies_and_unpacks_a_split_bundle_that_onnxruntime_runs(
    live_server: Any, split_variant: Any, tmp_path: Path
) -> None:
    from pullcli.__main__ import main as cli

    variant, data = split_variant
    out = tmp_path / "out"
    out.mkdir()
    # resumed from what an interrupted run left: a Range request across chunks
    (out / f"{variant.sha256}.tar.part").write_bytes(data[:200_000])
    argv = ["router", "--precision", "fp32", "-o", str(out), "--server", live_server.url, "--quiet"]
    assert cli(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "tokenizer.json"]
    run_model(out / "model.onnx")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("s3")
def test_on_s3_a_split_bundle_is_streamed_not_redirected(
    live_server: Any, make_model: Any, tmp_path: Path, settings: Any
) -> None:
    from pullcli.__main__ import main as cli

    settings.ARTIFACT_PRESIGNED_DOWNLOADS = True
    bundle = make_bundle(tmp_path, "router", ENCODER, HEAD, TOKENIZER)
    stored = artifact_put_path(bundle, split=True)
    assert artifact_is_composite(stored.sha256)
    variant = Variant.objects.create(
        version=make_model("Router").latest_version,
        name="onnx-fp32",
        format="onnx",
        precision="fp32",
        runtime="onnxruntime",
        status=VariantStatus.SERVED,
        sha256=stored.sha256,
        size=stored.size,
    )
    response = download(variant)
    assert response.status_code == 200  # no single object to presign
    assert body_of(response) == bundle.read_bytes()
    assert response["ETag"] == f'"{stored.sha256}"'
    ranged = download(variant, Range="bytes=1000-299999")
    assert ranged.status_code == 206
    assert body_of(ranged) == bundle.read_bytes()[1000:300_000]
    out = tmp_path / "out"
    assert cli(["router", "--precision", "fp32", "-o", str(out), "--server", live_server.url, "--quiet"]) == 0
    run_model(out / "model.onnx")


def split_version_file(make_model: Any, tmp_path: Path) -> tuple[Any, bytes]:
    """A model whose latest version's model.safetensors is stored split."""
    from safetensors.numpy import save_file

    from catalog.services.registry import model_version_create, model_version_finish

    model = make_model("Router")
    save_file({"encoder": ENCODER, "head": HEAD}, str(tmp_path / "model.safetensors"))
    stored = artifact_put_path(tmp_path / "model.safetensors", split=True)
    assert artifact_is_composite(stored.sha256)
    version = model_version_create(
        registered_model=model,
        family="mlp-classifier",
        files=[{"name": "model.safetensors", "sha256": stored.sha256, "size": stored.size}],
        labels=["a", "b"],
    )
    model_version_finish(version=version)
    return model, (tmp_path / "model.safetensors").read_bytes()


def test_hub_resolve_serves_a_split_version_file(make_model: Any, tmp_path: Path) -> None:
    _, data = split_version_file(make_model, tmp_path)
    sha = hashlib.sha256(data).hexdigest()
    client = Client()
    head = client.head("/hf/team-a/router/resolve/main/model.safetensors")
    assert head.status_code == 200
    assert head["X-Linked-Size"] == str(len(data))
    assert head["ETag"] == f'"{sha}"'
    got = client.get("/hf/team-a/router/resolve/main/model.safetensors")
    assert got.status_code == 200
    assert body_of(got) == data
    part = client.get("/hf/team-a/router/resolve/main/model.safetensors", HTTP_RANGE="bytes=100-200000")
    assert part.status_code == 206
    assert body_of(part) == data[100:200_001]


@pytest.mark.usefixtures("s3")
def test_hub_resolve_streams_a_split_version_file_on_s3(make_model: Any, tmp_path: Path, settings: Any) -> None:
    settings.ARTIFACT_PRESIGNED_DOWNLOADS = True
    _, data = split_version_file(make_model, tmp_path)
    got = Client().get("/hf/team-a/router/resolve/main/model.safetensors")
    assert got.status_code == 200
    assert body_of(got) == data
    assert got["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'


def test_the_version_file_download_serves_a_split_file_whole(make_model: Any, tmp_path: Path) -> None:
    _, data = split_version_file(make_model, tmp_path)  # version 2
    response = Client().get("/models/router/v2/files/model.safetensors")
    assert response.status_code == 200
    assert int(response["Content-Length"]) == len(data)
    assert body_of(response) == data
    assert response["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
