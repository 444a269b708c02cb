from __future__ import annotations

import hashlib
import io
import os
from typing import Any

import pytest
from rest_framework.test import APIClient

from catalog.models import Variant, VariantStatus, Visibility
from catalog.storage import artifact_put

pytestmark = pytest.mark.django_db

BLOB = os.urandom(300_000)
SHA = hashlib.sha256(BLOB).hexdigest()


@pytest.fixture
def served(make_model: Any) -> tuple[Any, dict[str, Variant]]:
    model = make_model("Router")
    version = model.latest_version
    stored = artifact_put(io.BytesIO(BLOB))
    variants = {}
    for name, precision, p95, status in (
        ("onnx-fp32", "fp32", 12.0, VariantStatus.SERVED),
        ("onnx-int8", "int8", 6.0, VariantStatus.SERVED),
        ("onnx-int8-optimized", "int8", 4.0, VariantStatus.SERVED),
        ("onnx-int8-broken", "int8", 1.0, VariantStatus.REJECTED),
    ):
        variants[name] = Variant.objects.create(
            version=version,
            name=name,
            format="onnx",
            precision=precision,
            runtime="onnxruntime",
            hardware="cpu",
            status=status,
            status_reason="top-1 agreement 91% < 99%" if status == "rejected" else "",
            sha256=stored.sha256,
            size=stored.size,
            latency_p50_ms=p95 / 1.2,
            latency_p95_ms=p95,
            latency={"1": {"p50_ms": p95 / 1.2, "p95_ms": p95}, "32": {"p50_ms": p95 * 8, "p95_ms": p95 * 9}},
        )
    return model, variants


def test_resolve_picks_the_fastest_variant_within_bounds(served: Any) -> None:
    c = APIClient()
    body = c.get("/api/v1/models/router/resolve", {"precision": "int8", "hardware": "cpu"}).json()
    assert body["name"] == "onnx-int8-optimized"  # the rejected one is faster but never served
    assert body["sha256"] == SHA
    assert body["size"] == len(BLOB)
    assert body["download_url"].endswith(f"/api/v1/variants/{body['id']}/download")
    assert {"format", "precision", "runtime", "hardware", "parity", "latency"} <= set(body)
    assert c.get("/api/v1/models/router/resolve", {"precision": "fp32"}).json()["name"] == "onnx-fp32"
    assert (
        c.get("/api/v1/models/router/resolve", {"version": 1, "max_p95_ms": 5}).json()["name"] == "onnx-int8-optimized"
    )


def test_resolve_ranks_by_batch_1_and_batch_32_not_by_one_batch_1_p95(served: Any) -> None:
    """The lowest batch-1 p95 alone is not the pick: the geometric mean of the
    recorded batch-1 and batch-32 p50 is (a variant lacking one ranks last)."""
    model, variants = served
    version = model.latest_version
    for name, p95, b1, b32 in (
        ("onnx-int8-lucky-p95", 2.0, 3.0, 200.0),  # best batch-1 p95, slowest at batch 32: sqrt(3 * 200) = 24.5
        ("onnx-int8-even", 3.5, 3.2, 50.0),  # sqrt(3.2 * 50) = 12.6; onnx-int8: sqrt(5 * 48) = 15.5
    ):
        Variant.objects.create(
            version=version,
            name=name,
            format="onnx",
            precision="int8",
            runtime="onnxruntime",
            hardware="cpu",
            status=VariantStatus.SERVED,
            sha256=variants["onnx-int8"].sha256,
            size=variants["onnx-int8"].size,
            latency_p50_ms=b1,
            latency_p95_ms=p95,
            latency={"1": {"p50_ms": b1, "p95_ms": p95}, "32": {"p50_ms": b32, "p95_ms": b32 * 1.1}},
        )
    # onnx-int8-optimized: p95 4, p50 3.33 / 32.0 -> 10.3, still the fastest.
    c = APIClient()
    assert c.get("/api/v1/models/router/resolve", {"precision": "int8"}).json()["name"] == "onnx-int8-optimized"
    Variant.objects.filter(name="onnx-int8-optimized").update(latency={"1": {"p50_ms": 3.3, "p95_ms": 4.0}})
    assert c.get("/api/v1/models/router/resolve", {"precision": "int8"}).json()["name"] == "onnx-int8-even"


def test_resolve_explains_a_404(served: Any) -> None:
    response = APIClient().get(
        "/api/v1/models/router/resolve", {"precision": "int8", "max_p95_ms": 3, "runtime": "onnxruntime"}
    )
    assert response.status_code == 404
    body = response.json()
    assert "meets the constraints" in body["detail"]
    reasons = {e["variant"]: e["reason"] for e in body["excluded"]}
    assert reasons["onnx-fp32"] == "precision is fp32, not int8"
    assert reasons["onnx-int8"] == "p95 6.00 ms > 3.0 ms"
    assert "rejected" in reasons["onnx-int8-broken"]
    assert APIClient().get("/api/v1/models/router/resolve", {"alias": "canary"}).json()["detail"] == (
        "router has no alias 'canary'"
    )
    assert APIClient().get("/api/v1/models/router/resolve", {"alias": "x", "version": 1}).status_code == 422


def download(variant: Variant, **headers: str) -> Any:
    return APIClient().get(
        f"/api/v1/variants/{variant.pk}/download",
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()},
    )


def body_of(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_full_download(served: Any) -> None:
    v = served[1]["onnx-int8"]
    response = download(v)
    assert response.status_code == 200
    data = body_of(response)
    assert hashlib.sha256(data).hexdigest() == SHA == response["ETag"].strip('"')
    assert int(response["Content-Length"]) == len(BLOB)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == 'attachment; filename="router-v1-onnx-int8.tar"'
    assert response["Accept-Ranges"] == "bytes"
    v.refresh_from_db()
    assert v.download_count == 1


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-1999", 1000, 1999),
        (f"bytes={len(BLOB) - 10}-", len(BLOB) - 10, len(BLOB) - 1),
        ("bytes=-500", len(BLOB) - 500, len(BLOB) - 1),
        (f"bytes=299990-{10**9}", 299990, len(BLOB) - 1),
    ],
)
def test_range_requests(served: Any, header: str, start: int, end: int) -> None:
    v = served[1]["onnx-int8"]
    response = download(v, Range=header)
    assert response.status_code == 206
    assert body_of(response) == BLOB[start : end + 1]
    assert response["Content-Range"] == f"bytes {start}-{end}/{len(BLOB)}"
    assert int(response["Content-Length"]) == end - start + 1
    v.refresh_from_db()
    assert v.download_count == (1 if start == 0 else 0)  # resumed pieces are not new downloads


@pytest.mark.parametrize("header", [f"bytes={len(BLOB)}-", "bytes=500-100", "bytes=-0", f"bytes={10**12}-{10**13}"])
def test_unsatisfiable_ranges_get_416(served: Any, header: str) -> None:
    response = download(served[1]["onnx-int8"], Range=header)
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(BLOB)}"
    assert response.json()["code"] == "range_not_satisfiable"


@pytest.mark.parametrize("header", ["bytes=abc", "lines=0-1", "bytes=-", "S=_5 )", "bytes=0-1,5-9"])
def test_a_header_that_is_not_one_byte_range_gets_the_whole_file(served: Any, header: str) -> None:
    response = download(served[1]["onnx-int8"], Range=header)  # RFC 9110: ignored
    assert response.status_code == 200
    assert body_of(response) == BLOB


def test_if_range_and_if_none_match(served: Any) -> None:
    v = served[1]["onnx-int8"]
    stale = download(v, Range="bytes=0-9", **{"If-Range": '"' + "0" * 64 + '"'})
    assert stale.status_code == 200
    assert body_of(stale) == BLOB
    fresh = download(v, Range="bytes=0-9", **{"If-Range": f'"{SHA}"'})
    assert fresh.status_code == 206
    assert body_of(fresh) == BLOB[:10]
    assert download(v, **{"If-None-Match": f'"{SHA}"'}).status_code == 304


def test_head_has_the_headers_and_no_body(served: Any) -> None:
    v = served[1]["onnx-int8"]
    response = APIClient().head(f"/api/v1/variants/{v.pk}/download")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response["Content-Length"]) == len(BLOB)
    assert response["ETag"] == f'"{SHA}"'


def test_rejected_private_and_missing_variants(served: Any, make_model: Any, make_team: Any) -> None:
    response = download(served[1]["onnx-int8-broken"])
    assert response.status_code == 409
    assert "not served" in response.json()["detail"]
    secret = make_model("Secret", team=make_team("Team B"), visibility=Visibility.PRIVATE)
    hidden = Variant.objects.create(
        version=secret.latest_version,
        name="onnx-fp32",
        format="onnx",
        precision="fp32",
        runtime="onnxruntime",
        status="served",
        sha256=SHA,
        size=len(BLOB),
    )
    assert download(hidden).status_code == 404
    assert APIClient().get("/api/v1/models/secret/resolve").status_code == 404
    assert APIClient().get("/api/v1/variants/999999/download").status_code == 404


def test_compile_request_is_idempotent_and_team_only(
    served: Any, make_user: Any, make_team: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from catalog.services.tokens import api_token_create

    model, _ = served
    version = model.latest_version
    # A ready version is immutable; this test only needs a compilable family.
    type(version).objects.filter(pk=version.pk).update(family="text-classifier")
    member = APIClient()
    member.credentials(
        HTTP_AUTHORIZATION=f"Token {api_token_create(user=make_user('alice', make_team('Team A')), name='test')}"
    )
    with django_capture_on_commit_callbacks() as callbacks:
        response = member.post(f"/api/v1/versions/{version.pk}/compile/")
    assert response.status_code == 202
    assert len(callbacks) == 1
    outsider = APIClient()
    outsider.credentials(
        HTTP_AUTHORIZATION=f"Token {api_token_create(user=make_user('bob', make_team('Team B')), name='test')}"
    )
    assert outsider.post(f"/api/v1/versions/{version.pk}/compile/").status_code == 404
