"""Deploy API: resolve a variant, download its bundle (Range/ETag/S3), recompile."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db.models import F
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api.authentication import ApiTokenAuthentication
from catalog.models import ModelVersion, Variant, VariantStatus
from catalog.selectors.jobs import teams_of
from catalog.selectors.variants import variant_resolve
from catalog.selectors.visibility import models_visible, visibility_q
from catalog.storage import artifact_key, artifact_open, artifact_open_range, artifact_storage


def variant_body(variant: Variant, request: Any) -> dict[str, Any]:
    return {
        "id": variant.pk,
        "name": variant.name,
        "model": variant.version.registered_model.slug,
        "version": variant.version.version,
        "format": variant.format,
        "precision": variant.precision,
        "runtime": variant.runtime,
        "hardware": variant.hardware,
        "opset": variant.opset,
        "toolchain": variant.toolchain,
        "sha256": variant.sha256,
        "size": variant.size,
        "parity": variant.parity,
        "latency": variant.latency,
        "latency_p50_ms": variant.latency_p50_ms,
        "latency_p95_ms": variant.latency_p95_ms,
        "hardware_fingerprint": variant.hardware_fingerprint,
        "download_url": request.build_absolute_uri(f"/api/v1/variants/{variant.pk}/download"),
    }


class ResolveParams(serializers.Serializer):  # type: ignore[type-arg]
    alias = serializers.SlugField(required=False, default="")
    version = serializers.IntegerField(required=False, min_value=1, default=None)
    runtime = serializers.CharField(required=False, default="", max_length=30)
    precision = serializers.CharField(required=False, default="", max_length=10)
    hardware = serializers.CharField(required=False, default="", max_length=30)
    format = serializers.CharField(required=False, default="", max_length=30)
    max_p95_ms = serializers.FloatField(required=False, min_value=0, default=None)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["alias"] and attrs["version"] is not None:
            raise serializers.ValidationError("Give an alias or a version, not both.")
        return attrs


@extend_schema(parameters=[ResolveParams], responses={200: dict, 404: dict})
@api_view(["GET"])
def model_resolve(request: Request, slug: str) -> Response:
    params = ResolveParams(data=request.query_params)
    params.is_valid(raise_exception=True)
    model = models_visible(user=request.user).filter(slug=slug).first()
    if model is None:
        raise Http404("No model with that slug is visible to you.")
    r = variant_resolve(model=model, **params.validated_data)
    if r.variant is None:
        return Response(
            {
                "detail": r.reason,
                "model": slug,
                "version": r.version.version if r.version else None,
                "constraints": {k: v for k, v in params.validated_data.items() if v not in ("", None)},
                "excluded": r.excluded,
            },
            status=404,
        )
    return Response({**variant_body(r.variant, request), "excluded": r.excluded})


@extend_schema(request=None, responses={202: dict})
@api_view(["POST"])
@permission_classes([IsAuthenticated])
def version_compile_request(request: Request, version_id: int) -> Response:
    from catalog.services.compile import COMPILABLE, compile_request

    version = ModelVersion.objects.filter(pk=version_id, registered_model__team__in=teams_of(request.user)).first()
    if version is None:
        raise Http404("No version with that id in your teams.")
    if version.family not in COMPILABLE:
        raise serializers.ValidationError({"version": [f"{version.family!r} models have no compiled variants."]})
    if not compile_request(version=version):
        raise serializers.ValidationError({"version": [f"{version} is {version.status}; only ready versions compile."]})
    return Response(
        {"version": version.pk, "queued": True, "variants": [v.name for v in version.variants.all()]}, status=202
    )


# --- download -----------------------------------------------------------------

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _user(request: HttpRequest) -> Any:
    """Token or session authentication for a plain Django view."""
    try:
        result = ApiTokenAuthentication().authenticate(request)  # type: ignore[arg-type]
    except AuthenticationFailed as exc:
        raise PermissionError(str(exc.detail)) from exc
    if result is not None:
        return result[0]
    return request.user


class RangeNotSatisfiable(Exception):
    pass


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single byte range; None for no range (or
    several, answered with the whole file).

    Raises:
        RangeNotSatisfiable: a malformed or out-of-bounds range (→ 416).
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match:
        if "," in header:
            return None
        raise RangeNotSatisfiable(header)
    first, last = match.groups()
    if not first and not last:
        raise RangeNotSatisfiable(header)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - n), size - 1
    start = int(first)
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(header)
    return start, min(int(last), size - 1) if last else size - 1


@require_http_methods(["GET", "HEAD"])
def variant_download(request: HttpRequest, variant_id: int) -> HttpResponseBase:
    try:
        user = _user(request)
    except PermissionError as exc:
        return JsonResponse({"detail": str(exc)}, status=401)
    variant = (
        Variant.objects.select_related("version__registered_model")
        .filter(visibility_q(user, prefix="version__registered_model__"), pk=variant_id)
        .first()
    )
    if variant is None:
        return JsonResponse({"detail": "No variant with that id is visible to you."}, status=404)
    if variant.status != VariantStatus.SERVED or not variant.sha256:
        return JsonResponse(
            {"detail": f"{variant.name} is {variant.status} and is not served.", "reason": variant.status_reason},
            status=409,
        )
    model = variant.version.registered_model
    filename = f"{model.slug}-v{variant.version.version}-{variant.name}.tar"
    etag = f'"{variant.sha256}"'
    size = int(variant.size or 0)
    common = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "private, max-age=0",
    }

    if settings.ARTIFACT_STORAGE == "s3" and settings.ARTIFACT_PRESIGNED_DOWNLOADS:
        url = artifact_storage().url(  # type: ignore[call-arg]
            artifact_key(variant.sha256),
            parameters={
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
                "ResponseContentType": "application/x-tar",
            },
            expire=settings.ARTIFACT_PRESIGNED_TTL_S,
        )
        if request.method == "GET":
            Variant.objects.filter(pk=variant.pk).update(download_count=F("download_count") + 1)
        redirect = HttpResponse(status=302)
        redirect["Location"] = url
        redirect["ETag"] = etag
        return redirect

    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        unchanged = HttpResponse(status=304)
        unchanged["ETag"] = etag
        return unchanged
    wanted = request.headers.get("Range", "")
    if_range = request.headers.get("If-Range")
    if wanted and if_range is not None and if_range.strip() != etag:
        wanted = ""  # the client's copy is stale: send the whole new file
    try:
        span = _parse_range(wanted, size)
    except RangeNotSatisfiable:
        refused = HttpResponse(status=416)
        refused["Content-Range"] = f"bytes */{size}"
        for k, v in common.items():
            refused[k] = v
        return refused
    start, end = (0, size - 1) if span is None else span
    length = end - start + 1 if size else 0
    status = 200 if span is None else 206
    response: HttpResponseBase
    if request.method == "HEAD":
        response = HttpResponse(status=status)
    else:
        if start == 0:
            Variant.objects.filter(pk=variant.pk).update(download_count=F("download_count") + 1)
        body = artifact_open(variant.sha256) if status == 200 else artifact_open_range(variant.sha256, start, length)
        streamed = FileResponse(body, status=status, content_type="application/x-tar")
        # Full files go out through sendfile (wsgi.file_wrapper); ranges are
        # read in 1 MiB pieces, not FileResponse's default 4 KiB.
        streamed.block_size = 1 << 20
        response = streamed
    response["Content-Type"] = "application/x-tar"
    response["Content-Length"] = str(length)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    for k, v in common.items():
        response[k] = v
    return response


variant_download.__doc__ = "GET|HEAD the variant's bundle (tar: model, tokenizer, manifest.json)."
