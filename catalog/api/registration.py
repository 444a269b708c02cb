"""Registration API: create a model, upload a version (multipart, streamed),
promote/demote (aliases), deprecate/archive, edit the card.

Thin: validate the request, call ``catalog.services.registration``, shape the
answer. Errors are DRF exceptions shaped by the project's handler
(``{"detail", "code"}`` + ``errors`` for validation). A private model is a
404 identical to a missing one for anyone outside its team.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.http.multipartparser import MultiPartParserError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import api_view, parser_classes, permission_classes
from rest_framework.parsers import BaseParser, DataAndFiles, JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api.errors import COMMON_ERRORS, Unprocessable, error_responses
from catalog.api.fields import StrictStringsMixin
from catalog.models import Lifecycle, ModelVersion, RegisteredModel, Visibility
from catalog.selectors.jobs import teams_of
from catalog.selectors.visibility import model_get_visible
from catalog.services import registration as reg

# --- errors ------------------------------------------------------------------------------


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The resource already exists."
    default_code = "exists"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


class LengthRequired(exceptions.APIException):
    status_code = status.HTTP_411_LENGTH_REQUIRED
    default_detail = "Send a Content-Length header (the size limit is checked before reading the body)."
    default_code = "length_required"


def _drf_error(exc: Exception) -> exceptions.APIException:
    """A service's Django exception as the DRF one the handler shapes."""
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or "You are not allowed to do this.")
    assert isinstance(exc, DjangoValidationError)
    # The request matched the schema; the service refused what it asks: 422.
    if hasattr(exc, "error_dict"):
        return Unprocessable({k: [m for e in v for m in e.messages] for k, v in exc.error_dict.items()})
    return Unprocessable({"non_field_errors": exc.messages})


def _model(request: Request, slug: str) -> RegisteredModel:
    model = model_get_visible(user=request.user, slug=slug)
    if model is None:
        raise Http404("No model with that slug is visible to you.")
    return model


# --- a multipart parser that keeps the client's file names ------------------------------


# Django's parser and UploadedFile strip directories from file names ("../x"
# → "x"); the service must see the name as sent to refuse it. Separators
# travel as these stand-ins (never valid in a name) and are restored by
# ``_sent_name``; non-printable characters become U+FFFD (refused too).
_SLASH, _BACKSLASH = "\u2215", "\u29f5"


class _RawNameMultiPartParser(DjangoMultiPartParser):
    def sanitize_file_name(self, file_name: str) -> str | None:
        import html

        name = html.unescape(file_name).replace("/", _SLASH).replace("\\", _BACKSLASH)
        return "".join(c if c.isprintable() else "\ufffd" for c in name) or None


def _sent_name(name: str) -> str:
    return name.replace(_SLASH, "/").replace(_BACKSLASH, "\\")


class FolderMultiPartParser(BaseParser):
    """multipart/form-data; big files go to temporary files (Django's upload
    handlers), never whole into memory."""

    media_type = "multipart/form-data"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> DataAndFiles:
        request = parser_context["request"]
        meta = request.META.copy()
        meta["CONTENT_TYPE"] = media_type
        try:
            parser = _RawNameMultiPartParser(meta, stream, request.upload_handlers, settings.DEFAULT_CHARSET)
            data, files = parser.parse()
        except MultiPartParserError as exc:
            raise exceptions.ParseError(f"Multipart form parse error: {exc}") from exc
        return DataAndFiles(data, files)


# --- serializers --------------------------------------------------------------------------


class ModelCreateSerializer(StrictStringsMixin, serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=200)
    team = serializers.SlugField(required=False, help_text="Team slug; optional when you belong to one team.")
    visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.INTERNAL)
    summary = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    card = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Markdown, optional YAML front matter."
    )
    modality = serializers.CharField(
        required=False, allow_blank=True, help_text="Tree path; proposed from the first version when left out."
    )
    result = serializers.CharField(
        required=False, allow_blank=True, help_text="Tree path; proposed from the first version when left out."
    )
    domain = serializers.CharField(required=False, allow_blank=True, help_text="Tree path; `general` when left out.")


class ModelCreatedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    slug = serializers.CharField()
    name = serializers.CharField()
    team = serializers.CharField(help_text="team slug")
    visibility = serializers.ChoiceField(choices=Visibility.choices)
    modality = serializers.CharField()
    result = serializers.CharField()
    domain = serializers.CharField()
    url = serializers.URLField(help_text="the model in the API")
    web_url = serializers.URLField(help_text="the model page")
    versions_url = serializers.URLField(help_text="POST a folder here to add a version")


class VersionUploadSerializer(serializers.Serializer):  # type: ignore[type-arg]
    files = serializers.ListField(
        child=serializers.FileField(),
        help_text="Every file of the folder as a `files` part (flat: no sub-folders). "
        "Weights must be safetensors (single, or sharded with model.safetensors.index.json).",
    )
    message = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class StoredFileSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField()
    sha256 = serializers.CharField()
    size = serializers.IntegerField()


class IntakeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    family = serializers.CharField()
    architectures = serializers.ListField(child=serializers.CharField())
    model_type = serializers.CharField()
    labels = serializers.ListField(child=serializers.CharField())
    parameter_count = serializers.IntegerField()
    dtypes = serializers.DictField(child=serializers.IntegerField(), help_text="dtype → parameters")
    sharded = serializers.BooleanField()
    max_length = serializers.IntegerField(allow_null=True)
    modality = serializers.CharField(help_text="proposed modality path")
    result = serializers.CharField(help_text="proposed result path")
    notes = serializers.ListField(child=serializers.CharField())


class VersionCreatedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = serializers.CharField()
    version = serializers.IntegerField()
    status = serializers.CharField()
    family = serializers.CharField()
    files = StoredFileSerializer(many=True)
    compile = serializers.ChoiceField(
        choices=[("queued", "queued"), ("skipped", "skipped"), ("off", "off")],
        help_text="`skipped` (with compile_reason) when the architecture cannot be compiled",
    )
    compile_reason = serializers.CharField()
    intake = IntakeSerializer()
    url = serializers.URLField(help_text="the version's page")
    resolve_url = serializers.URLField()


ALIAS_CHOICES = [(a, a) for a in reg.ALIASES]


class AliasSetSerializer(StrictStringsMixin, serializers.Serializer):  # type: ignore[type-arg]
    alias = serializers.ChoiceField(choices=ALIAS_CHOICES)
    version = serializers.IntegerField(min_value=1, help_text="version number")


class AliasSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = serializers.CharField()
    alias = serializers.ChoiceField(choices=ALIAS_CHOICES)
    version = serializers.IntegerField()


class LifecycleSerializer(StrictStringsMixin, serializers.Serializer):  # type: ignore[type-arg]
    state = serializers.ChoiceField(choices=Lifecycle.choices)
    version = serializers.IntegerField(
        min_value=1, required=False, allow_null=True, help_text="a version number; the whole model when left out"
    )
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class LifecycleStateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = serializers.CharField()
    version = serializers.IntegerField(allow_null=True)
    state = serializers.ChoiceField(choices=Lifecycle.choices)
    reason = serializers.CharField()


class CardSerializer(StrictStringsMixin, serializers.Serializer):  # type: ignore[type-arg]
    card = serializers.CharField(allow_blank=True, help_text="Markdown, optional YAML front matter")


class CardStateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = serializers.CharField()
    license = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    card = serializers.CharField()


# --- create a model ---------------------------------------------------------------------------

MODEL_CREATE_SCHEMA: dict[str, Any] = {
    "request": ModelCreateSerializer,
    "responses": {
        201: ModelCreatedSerializer,
        **error_responses(400, 401, 403, 409, 415, 422, *COMMON_ERRORS),
    },
    "description": "Register a new (empty) model in one of your teams (member role). Then POST its "
    "files to `versions_url`. 409 when a model with the same slug exists.",
    "operation_id": "models_create",
}


def model_create(request: Request) -> Response:
    """``POST /api/v1/models/`` (dispatched from the search route, which owns GET)."""
    if not request.user.is_authenticated:
        raise exceptions.NotAuthenticated()
    form = ModelCreateSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    teams = teams_of(request.user)
    if data.get("team"):
        team = teams.filter(slug=data["team"]).first()
        if team is None:
            raise Unprocessable({"team": [f"You are not a member of a team {data['team']!r}."]})
    else:
        mine = list(teams[:2])
        if len(mine) != 1:
            raise Unprocessable(
                {"team": ["Name the team (you belong to several)." if mine else "You belong to no team."]}
            )
        team = mine[0]
    try:
        model = reg.model_register(
            user=request.user,
            team=team,
            name=data["name"],
            visibility=data["visibility"],
            summary=data["summary"],
            card=data["card"],
            modality=data.get("modality") or None,
            result=data.get("result") or None,
            domain=data.get("domain") or None,
        )
    except DjangoValidationError as exc:
        errors = getattr(exc, "error_dict", {})
        if any(e.code == "exists" for e in errors.get("name", [])):
            raise Conflict(errors["name"][0].messages[0]) from exc
        raise _drf_error(exc) from exc
    except DjangoPermissionDenied as exc:
        raise _drf_error(exc) from exc
    return Response(model_created_body(request, model), status=status.HTTP_201_CREATED)


def model_created_body(request: Request, model: RegisteredModel) -> dict[str, Any]:
    from django.urls import reverse

    return {
        "slug": model.slug,
        "name": model.name,
        "team": model.team.slug,
        "visibility": model.visibility,
        "modality": model.modality.path,
        "result": model.result_kind.path,
        "domain": model.domain.path,
        "url": request.build_absolute_uri(reverse("api:model", args=[model.slug])),
        "web_url": request.build_absolute_uri(model.get_absolute_url()),
        "versions_url": request.build_absolute_uri(reverse("api:model_versions", args=[model.slug])),
    }


# --- upload a version -------------------------------------------------------------------------


def _check_length(request: Request) -> None:
    """Refuse by the declared size before a byte of the body is read."""
    raw = request.META.get("CONTENT_LENGTH") or ""
    try:
        length = int(raw)
    except ValueError:
        raise LengthRequired() from None
    if length > settings.MODEL_MAX_BYTES:
        raise PayloadTooLarge(
            f"The upload is {length} bytes; the limit is {settings.MODEL_MAX_BYTES} (MODEL_MAX_BYTES)."
        )


def version_created_body(request: Request, version: ModelVersion) -> dict[str, Any]:
    from django.urls import reverse

    intake = version.intake or {}
    variants = list(version.variants.all())
    skipped = [v for v in variants if v.status == "skipped" and not v.sha256]
    if variants and len(skipped) == len(variants):
        compile_state, reason = "skipped", skipped[0].status_reason
    elif settings.COMPILE_ON_READY:
        compile_state, reason = "queued", ""
    else:
        compile_state, reason = "off", "COMPILE_ON_READY is off on this server"
    model = version.registered_model
    return {
        "model": model.slug,
        "version": version.version,
        "status": version.status,
        "family": version.family,
        "files": [{"name": f["name"], "sha256": f["sha256"], "size": f["size"]} for f in version.files],
        "compile": compile_state,
        "compile_reason": reason,
        "intake": {
            "family": version.family,
            "architectures": intake.get("architectures", []),
            "model_type": intake.get("model_type", ""),
            "labels": version.labels,
            "parameter_count": intake.get("parameter_count", 0),
            "dtypes": intake.get("dtypes", {}),
            "sharded": bool(intake.get("sharded")),
            "max_length": intake.get("max_length"),
            "modality": intake.get("modality", ""),
            "result": intake.get("result", ""),
            "notes": intake.get("notes", []),
        },
        "url": request.build_absolute_uri(f"{model.get_absolute_url()}?version={version.version}"),
        "resolve_url": request.build_absolute_uri(reverse("api:resolve", args=[model.slug]))
        + f"?version={version.version}",
    }


def folder_store(uploads: list[Any]) -> dict[str, str]:
    """Put every uploaded file in the artifact store (hashed while copied):
    ``{name: sha256}``. Duplicate names are refused (the blobs stored so far
    are discarded when nothing else uses them)."""
    from catalog.intake.upload import upload_store

    files: dict[str, str] = {}
    try:
        for upload in uploads:
            name = _sent_name(str(upload.name))
            sha256 = upload_store(upload)
            if name in files:
                reg.blobs_discard_unreferenced({*files.values(), sha256})
                raise Unprocessable({"files": [f"{name!r} was sent twice."]})
            files[name] = sha256
    finally:
        for upload in uploads:  # temporary files not moved into the store
            upload.close()
    return files


_UPLOAD_ERRORS: dict[int, type[exceptions.APIException]] = {
    400: exceptions.ParseError,
    408: exceptions.ParseError,
    411: LengthRequired,
    413: PayloadTooLarge,
}


def folder_receive(request: Any) -> tuple[dict[str, str], str]:
    """Read the multipart body as it arrives (``catalog.uploads.multipart_store``):
    every ``files`` part is hashed while written beside the store and renamed
    into place — one pass over the bytes. ``({name: sha256}, message)``; on
    bad input the blobs this request stored that nothing else uses are
    discarded and the error answered as JSON."""
    from catalog.uploads import MultipartBody, UploadError, multipart_store

    received = MultipartBody()
    try:
        multipart_store(
            request,
            received,
            file_fields=frozenset({"files"}),
            max_files=settings.MODEL_MAX_FILES,
            max_field_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
            max_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS or 1000,
        )
    except UploadError as exc:
        reg.blobs_discard_unreferenced({f.sha256 for f in received.files})
        if exc.status == 415:
            raise exceptions.UnsupportedMediaType(request.META.get("CONTENT_TYPE", ""), exc.message) from None
        error = _UPLOAD_ERRORS.get(exc.status, exceptions.ParseError)
        raise error(exc.message) from None
    except BaseException:
        reg.blobs_discard_unreferenced({f.sha256 for f in received.files})
        raise
    files: dict[str, str] = {}
    for upload in received.files:
        if upload.name in files:
            reg.blobs_discard_unreferenced({f.sha256 for f in received.files})
            raise Unprocessable({"files": [f"{upload.name!r} was sent twice."]})
        files[upload.name] = upload.sha256
    if not files:
        raise Unprocessable({"files": ["Send the folder's files as multipart `files` parts."]})
    messages = received.fields.get("message") or [""]
    return files, messages[-1][:2000]


@extend_schema(
    request={"multipart/form-data": VersionUploadSerializer},
    responses={
        201: VersionCreatedSerializer,
        **error_responses(400, 401, 403, 404, 411, 413, 415, 422, *COMMON_ERRORS),
    },
    description="Upload a Hugging Face-format folder as a new immutable version (member role). "
    "Files are streamed to temporary files and hashed into the content-addressed store; the "
    "request is refused by its Content-Length beyond MODEL_MAX_BYTES. Pickle weights "
    "(`*.bin`, `*.pt`, `*.pth`, `*.ckpt`, `*.pkl`) are refused and nothing is stored.",
)
@api_view(["POST"])
@permission_classes([IsAuthenticated])
@parser_classes([FolderMultiPartParser])
def model_versions_create(request: Request, slug: str) -> Response:
    model = _model(request, slug)
    from catalog.roles import Role, role_require

    try:
        role_require(request.user, model.team, Role.MEMBER, "register a version")
    except DjangoPermissionDenied as exc:
        raise _drf_error(exc) from exc
    _check_length(request)
    if request._request._read_started:  # type: ignore[attr-defined]
        # A session request: Django's CSRF check parsed the form already
        # (its files are temporary files; hashed while moved into the store).
        uploads = request.FILES.getlist("files")
        if not uploads:
            raise Unprocessable({"files": ["Send the folder's files as multipart `files` parts."]})
        message = str(request.POST.get("message", ""))[:2000]
        files = folder_store(uploads)
    else:
        files, message = folder_receive(request._request)
    try:
        version = reg.version_register(user=request.user, registered_model=model, files=files, message=message)
    except (DjangoValidationError, DjangoPermissionDenied) as exc:
        if isinstance(exc, reg.IntakeRefused):
            raise Unprocessable({"files": exc.messages}) from exc
        raise _drf_error(exc) from exc
    return Response(version_created_body(request, version), status=status.HTTP_201_CREATED)


# --- aliases ---------------------------------------------------------------------------------


@extend_schema(
    request=AliasSetSerializer,
    responses={200: AliasSerializer, **error_responses(400, 401, 403, 404, 422, *COMMON_ERRORS)},
    description="Promote a version to `production` or `staging` (maintainer role). Refused with the "
    "reason for a version that is below the quality gate, not ready, deprecated or archived.",
)
@api_view(["POST"])
@permission_classes([IsAuthenticated])
@parser_classes([JSONParser])
def model_aliases_set(request: Request, slug: str) -> Response:
    model = _model(request, slug)
    form = AliasSetSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    version = model.versions.filter(version=form.validated_data["version"]).first()
    if version is None:
        raise Unprocessable({"version": [f"{model.slug} has no v{form.validated_data['version']}."]})
    try:
        reg.alias_set_checked(
            user=request.user, registered_model=model, name=form.validated_data["alias"], version=version
        )
    except (DjangoValidationError, DjangoPermissionDenied) as exc:
        raise _drf_error(exc) from exc
    return Response({"model": model.slug, "alias": form.validated_data["alias"], "version": version.version})


@extend_schema(
    request=None,
    responses={204: OpenApiResponse(description="Demoted."), **error_responses(401, 403, 404, 422, *COMMON_ERRORS)},
    description="Demote: remove the alias (maintainer role).",
)
@api_view(["DELETE"])
@permission_classes([IsAuthenticated])
def model_alias_delete(request: Request, slug: str, alias: str) -> Response:
    model = _model(request, slug)
    if alias not in reg.ALIASES or not model.aliases.filter(name=alias).exists():
        raise Http404(f"{model.slug} has no {alias} alias.")
    try:
        reg.alias_remove(user=request.user, registered_model=model, name=alias)
    except (DjangoValidationError, DjangoPermissionDenied) as exc:
        raise _drf_error(exc) from exc
    return Response(status=status.HTTP_204_NO_CONTENT)


# --- lifecycle and card ---------------------------------------------------------------------


@extend_schema(
    request=LifecycleSerializer,
    responses={200: LifecycleStateSerializer, **error_responses(400, 401, 403, 404, 422, *COMMON_ERRORS)},
    description="Deprecate, archive or restore (`active`) the model or one version (maintainer role). "
    "Deprecated and archived models leave search results but stay resolvable by exact version.",
)
@api_view(["POST"])
@permission_classes([IsAuthenticated])
@parser_classes([JSONParser])
def model_lifecycle(request: Request, slug: str) -> Response:
    model = _model(request, slug)
    form = LifecycleSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    version = None
    if data.get("version"):
        version = model.versions.filter(version=data["version"]).first()
        if version is None:
            raise Unprocessable({"version": [f"{model.slug} has no v{data['version']}."]})
    try:
        target = reg.lifecycle_set(
            user=request.user, registered_model=model, state=data["state"], version=version, reason=data["reason"]
        )
    except (DjangoValidationError, DjangoPermissionDenied) as exc:
        raise _drf_error(exc) from exc
    return Response(
        {
            "model": model.slug,
            "version": version.version if version else None,
            "state": target.lifecycle,
            "reason": target.lifecycle_reason,
        }
    )


@extend_schema(
    request=CardSerializer,
    responses={200: CardStateSerializer, **error_responses(400, 401, 403, 404, 422, *COMMON_ERRORS)},
    description="Replace the model card (maintainer role). YAML front matter (`license`, `tags`, "
    "`datasets`, `language`) is read into fields; the Markdown is rendered sanitised.",
)
@api_view(["PUT"])
@permission_classes([IsAuthenticated])
@parser_classes([JSONParser])
def model_card(request: Request, slug: str) -> Response:
    model = _model(request, slug)
    form = CardSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    try:
        reg.model_card_update(user=request.user, registered_model=model, card=form.validated_data["card"])
    except (DjangoValidationError, DjangoPermissionDenied) as exc:
        raise _drf_error(exc) from exc
    return Response({"model": model.slug, "license": model.license, "tags": model.tags, "card": model.card})
