"""Deploy API: resolve a variant, download its bundle (Range/ETag/S3), recompile."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import F
from django.http import FileResponse, HttpResponse, HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, content_negotiation_class, permission_classes, renderer_classes
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api.errors import COMMON_ERRORS, ApiError, NoVariantSerializer, Unprocessable, error_responses
from catalog.api.serializers import CompileQueuedSerializer, ResolvedVariantSerializer
from catalog.models import ModelVersion, Variant, VariantStatus
from catalog.selectors.jobs import teams_of
from catalog.selectors.variants import variant_resolve
from catalog.selectors.visibility import models_visible, visibility_q
from catalog.storage import artifact_exists, artifact_open, artifact_open_range, artifact_presigned_url

log = logging.getLogger(__name__)

MAX_INT = 2**31 - 1


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
    alias = serializers.SlugField(required=False, allow_blank=True, default="")
    version = serializers.IntegerField(required=False, min_value=1, max_value=MAX_INT, default=None)
    runtime = serializers.CharField(required=False, allow_blank=True, default="", max_length=30)
    precision = serializers.CharField(required=False, allow_blank=True, default="", max_length=10)
    hardware = serializers.CharField(required=False, allow_blank=True, default="", max_length=30)
    format = serializers.CharField(required=False, allow_blank=True, default="", max_length=30)
    max_p95_ms = serializers.FloatField(required=False, min_value=0, default=None)


@extend_schema(
    parameters=[ResolveParams],
    responses={
        200: ResolvedVariantSerializer,
        404: OpenApiResponse(
            NoVariantSerializer,
            description="No visible model with that slug (`code: not_found`, `detail` only), or no served "
            "variant meets the constraints (`code: no_variant`, with the variants passed over and why).",
        ),
        **error_responses(400, 401, 422, *COMMON_ERRORS),
    },
    description="The fastest served variant (batch-1 p95) of the model's `production` alias (or the "
    "given alias or version) that meets every constraint. Give an alias or a version, not both.",
)
@api_view(["GET"])
def model_resolve(request: Request, slug: str) -> Response:
    # A plain dict, not the QueryDict: DRF reads an empty value in a QueryDict as
    # "not given", and the schema says e.g. `version=` is not an integer.
    params = ResolveParams(data=request.query_params.dict())
    params.is_valid(raise_exception=True)
    if params.validated_data["alias"] and params.validated_data["version"] is not None:
        # Each is valid alone; the schema cannot say "not both" for query parameters.
        raise Unprocessable({"non_field_errors": ["Give an alias or a version, not both."]})
    model = models_visible(user=request.user).filter(slug=slug).first()
    if model is None:
        raise NotFound("No model with that slug is visible to you.")
    r = variant_resolve(model=model, **params.validated_data)
    if r.variant is None:
        raise ApiError(
            404,
            r.reason,
            "no_variant",
            model=slug,
            version=r.version.version if r.version else None,
            constraints={k: v for k, v in params.validated_data.items() if v not in ("", None)},
            excluded=r.excluded,
        )
    return Response({**variant_body(r.variant, request), "excluded": r.excluded})


@extend_schema(
    request=None,
    responses={
        202: CompileQueuedSerializer,
        **error_responses(401, 403, 404, 409, *COMMON_ERRORS),
    },
    description="Queue a (re)compile of a ready version of one of your teams' models into its "
    "ONNX variants. 409 when the version's family has no compiled variants or it is not ready.",
)
@api_view(["POST"])
@permission_classes([IsAuthenticated])
def version_compile_request(request: Request, version_id: int) -> Response:
    from catalog.services.compile import COMPILABLE, compile_request

    version = ModelVersion.objects.filter(pk=version_id, registered_model__team__in=teams_of(request.user)).first()
    if version is None:
        raise NotFound("No version with that id in your teams.")
    from catalog.roles import Role, has_role

    if not has_role(request.user, version.registered_model.team_id, Role.MEMBER):
        raise PermissionDenied("Compiling needs the member role; viewers only see the team's models.")
    if version.family not in COMPILABLE:
        raise ApiError(409, f"{version.family!r} models have no compiled variants.", "not_compilable")
    if not compile_request(version=version):
        raise ApiError(409, f"{version} is {version.status}; only ready versions compile.", "not_ready")
    return Response(
        {"version": version.pk, "queued": True, "variants": [v.name for v in version.variants.all()]}, status=202
    )


# --- download -----------------------------------------------------------------

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(Exception):
    pass


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single byte range; None for no range, for
    several (answered with the whole file) and for a header that is not a
    byte range at all (RFC 9110 §14.2: a server ignores a Range it does not
    understand).

    Raises:
        RangeNotSatisfiable: a byte range that cannot be served (→ 416).
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None  # "bytes=-": not a range
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - n), size - 1
    start = int(first)
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(header)
    return start, min(int(last), size - 1) if last else size - 1


class BundleNegotiation(DefaultContentNegotiation):
    """Any ``Accept`` gets the bundle on success (a FileResponse, not rendered)
    and JSON for an error: the only renderer is JSON, and it is always picked."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        first = next(iter(renderers))
        return first, first.media_type


def ranged_file_response(
    *, sha256: str, size: int, span: tuple[int, int] | None, head: bool, content_type: str
) -> HttpResponseBase:
    """A stored blob as a 200 (``span`` None) or a 206 of ``span``; HEAD gets the
    headers only. Whole files go out through sendfile (wsgi.file_wrapper);
    ranges are read in 1 MiB pieces, not FileResponse's default 4 KiB. Raises
    what opening the blob raises (a missing file)."""
    start, end = (0, size - 1) if span is None else span
    length = end - start + 1 if size else 0
    status = 200 if span is None else 206
    response: HttpResponseBase
    if head:
        response = HttpResponse(status=status)
    else:
        body = artifact_open(sha256) if span is None else artifact_open_range(sha256, start, length)
        streamed = FileResponse(body, status=status, content_type=content_type)
        streamed.block_size = 1 << 20
        response = streamed
    response["Content-Type"] = content_type
    response["Content-Length"] = str(length)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response


def _response_header(name: str, codes: list[int], description: str = "") -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.STR, OpenApiParameter.HEADER, description=description, response=codes)


@extend_schema(
    operation_id="variants_download",
    parameters=[
        OpenApiParameter(
            "Range",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            description="One byte range, `bytes=START-[END]` or `bytes=-SUFFIX` (resume a download). Several "
            "ranges, or a header that is not a byte range, are answered with the whole file; a byte range "
            "outside the file with 416.",
        ),
        OpenApiParameter(
            "If-Range",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            description="The ETag of the partial copy: a stale one gets the whole new file (200).",
        ),
        OpenApiParameter(
            "If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, description="An ETag held: 304 if unchanged."
        ),
        _response_header("ETag", [200, 206, 302, 304], "The bundle's sha256, quoted."),
        _response_header("Accept-Ranges", [200, 206]),
        _response_header("Content-Disposition", [200, 206], '`attachment; filename="…tar"`'),
        _response_header("Content-Range", [206, 416]),
        _response_header("Location", [302], "A presigned URL of the bundle."),
    ],
    responses={
        (200, "application/x-tar"): OpenApiResponse(
            OpenApiTypes.BINARY,
            description="The bundle: a tar of the model file, tokenizer files and `manifest.json`.",
        ),
        (206, "application/x-tar"): OpenApiResponse(
            OpenApiTypes.BINARY,
            description="The requested byte range of the bundle.",
        ),
        302: OpenApiResponse(
            description="With S3 storage: a redirect to a short-lived presigned URL of the bundle (a bundle "
            "stored split into shared tensor chunks is streamed instead, with the same headers as on a filesystem).",
        ),
        304: OpenApiResponse(description="`If-None-Match` names the current ETag: the copy held is current."),
        **error_responses(401, 404, 409, 410, 416, 429, 503),
    },
    description="Download a served variant's bundle (GET or HEAD). Supports `Range` (206), `If-Range`, "
    "`If-None-Match` (304); with S3 storage answers 302 to a presigned URL when the bundle is one object "
    "in the bucket. 409 when the variant is not "
    "served, 410 when its file is missing from the artifact store.",
)
@api_view(["GET", "HEAD"])
@renderer_classes([JSONRenderer])
@content_negotiation_class(BundleNegotiation)
def variant_download(request: Request, variant_id: int) -> HttpResponseBase:
    variant = (
        Variant.objects.select_related("version__registered_model")
        .filter(visibility_q(request.user, prefix="version__registered_model__"), pk=variant_id)
        .first()
    )
    if variant is None:
        raise NotFound("No variant with that id is visible to you.")
    if variant.status != VariantStatus.SERVED or not variant.sha256:
        reason = f": {variant.status_reason}" if variant.status_reason else "."
        raise ApiError(409, f"{variant.name} is {variant.status} and is not served{reason}", "not_served")
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
    missing = ApiError(
        410,
        f"The file of {model.slug} v{variant.version.version} {variant.name} is missing from the artifact "
        "store; ask the model's team to compile it again.",
        "file_missing",
    )

    # A bundle stored whole is one object in the bucket: redirect to it. A
    # bundle stored split (its tensors shared with other versions) is no single
    # object, so it is streamed through here like on a filesystem — the same
    # bytes, ETag, Range and If-Range answers, without the redirect.
    url = (
        artifact_presigned_url(
            variant.sha256,
            parameters={
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
                "ResponseContentType": "application/x-tar",
            },
            expire=settings.ARTIFACT_PRESIGNED_TTL_S,
        )
        if settings.ARTIFACT_STORAGE == "s3" and settings.ARTIFACT_PRESIGNED_DOWNLOADS
        else None
    )
    if url is not None:
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
        raise ApiError(
            416,
            f"The range {wanted[:100]!r} cannot be served from a {size}-byte bundle.",
            "range_not_satisfiable",
            headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
        ) from None
    head = request.method == "HEAD"
    if head and not artifact_exists(variant.sha256):
        log.error("variant %s: blob %s is missing", variant.pk, variant.sha256)
        raise missing
    try:
        response = ranged_file_response(
            sha256=variant.sha256, size=size, span=span, head=head, content_type="application/x-tar"
        )
    except (FileNotFoundError, OSError) as exc:
        log.error("variant %s: blob %s cannot be opened: %s", variant.pk, variant.sha256, exc)
        raise missing from exc
    if not head and (span is None or span[0] == 0):  # a download starts (not a resumed range)
        Variant.objects.filter(pk=variant.pk).update(download_count=F("download_count") + 1)
    for k, v in common.items():
        response[k] = v
    return response
