"""The Hub routes. Thin: who is calling, which repo and revision, then a
selector or a service; errors are :class:`HubError` answered in the client's
shape.

Plain Django views rather than DRF: the request and response formats are the
Hub's (NDJSON commits, LFS JSON, raw PUT bodies, file downloads), not the
catalogue's API, and the routes stay out of the catalogue's OpenAPI schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from catalog.api.deploy import RangeNotSatisfiable, _parse_range, ranged_file_response
from catalog.hub import selectors, serializers, services
from catalog.hub.auth import hub_user
from catalog.hub.errors import HubError, entry_not_found, error_response, repo_not_found
from catalog.models import RegisteredModel, Visibility
from catalog.storage import artifact_presigned_url

XET_DISABLED_MESSAGE = (
    "This server does not support the Xet storage protocol. "
    "Set HF_HUB_DISABLE_XET=1 in your environment and run the upload again "
    "(huggingface_hub then uploads through Git LFS, which this server supports)."
)
LFS_CONTENT_TYPE = "application/vnd.git-lfs+json"


def hub_view(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """CSRF-exempt (token-authenticated), errors in the Hub's shape."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        head = request.method == "HEAD"
        try:
            return view(request, *args, **kwargs)
        except HubError as error:
            return error_response(error, head=head)
        except PermissionDenied as exc:
            return error_response(HubError(403, str(exc) or "Permission denied."), head=head)
        except ValidationError as exc:
            return error_response(HubError(400, " ".join(exc.messages)), head=head)

    return csrf_exempt(wrapper)


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise HubError(400, "The request body is not JSON.") from None
    if not isinstance(data, dict):
        raise HubError(400, "The request body must be a JSON object.")
    return data


def _repo(request: HttpRequest, namespace: str, name: str) -> tuple[Any, RegisteredModel]:
    user = hub_user(request)
    return user, selectors.repo_get(user=user, namespace=namespace, name=name)


def _repo_url(request: HttpRequest, model: RegisteredModel) -> str:
    return request.build_absolute_uri(reverse("hub:repo", args=[model.team.slug, model.slug]))


# --- repos ------------------------------------------------------------------------


@hub_view
@require_http_methods(["POST"])
def repo_create(request: HttpRequest) -> HttpResponse:
    """``HfApi.create_repo``: ``{"name", "organization", "type", "visibility"|"private"}``."""
    user = hub_user(request)
    data = _json_body(request)
    if data.get("type", "model") not in ("model", None):
        raise HubError(400, "Only model repos exist in the catalogue.")
    namespace, name = data.get("organization"), str(data.get("name") or "")
    if "/" in name and not namespace:
        namespace, name = name.split("/", 1)
    if not namespace:
        raise HubError(400, "A repo id is <team-slug>/<model-name>: pass the team as the namespace.")
    private = data.get("visibility") == "private" or (data.get("visibility") is None and data.get("private") is True)
    model = services.repo_create(
        user=user,
        namespace=str(namespace),
        name=name,
        visibility=Visibility.PRIVATE if private else Visibility.INTERNAL,
        repo_url=lambda m: _repo_url(request, m),
    )
    return JsonResponse({"url": _repo_url(request, model), "name": selectors.repo_id(model), "id": f"{model.pk}"})


@hub_view
@require_http_methods(["GET", "HEAD"])
def repo_page(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    """The repo URL that ``create_repo`` answers: its catalogue page."""
    _, model = _repo(request, namespace, name)
    response = HttpResponse(status=302)
    response["Location"] = model.get_absolute_url()
    return response


@hub_view
@require_http_methods(["GET"])
def model_info(request: HttpRequest, namespace: str, name: str, revision: str = "main") -> JsonResponse:
    """``model_info``/``repo_info``; with a revision, what ``snapshot_download``
    asks first to learn the commit id (``sha``)."""
    _, model = _repo(request, namespace, name)
    resolved = selectors.revision_resolve(model=model, revision=revision)
    return JsonResponse(serializers.model_info(model, resolved))


@hub_view
@require_http_methods(["GET"])
def tree(request: HttpRequest, namespace: str, name: str, revision: str, path: str = "") -> JsonResponse:
    """``list_repo_tree``: the files of a revision, ``Link: <…>; rel="next"``
    pages of ``HUB_TREE_PAGE_SIZE`` entries (``?cursor=`` is an offset)."""
    _, model = _repo(request, namespace, name)
    resolved = selectors.revision_resolve(model=model, revision=revision)
    path = path.strip("/")
    if path:
        # Files are stored flat: there is no folder to list.
        raise entry_not_found(path, resolved.commit)
    entries = sorted(resolved.files, key=lambda f: str(f["name"]))
    page_size = int(getattr(settings, "HUB_TREE_PAGE_SIZE", 1000))
    try:
        start = max(0, int(request.GET.get("cursor", "0")))
    except ValueError:
        raise HubError(400, "cursor must be an integer.") from None
    page = entries[start : start + page_size]
    response = JsonResponse([serializers.tree_entry(f) for f in page], safe=False)
    if start + page_size < len(entries):
        query = request.GET.copy()
        query["cursor"] = str(start + page_size)
        response["Link"] = f'<{request.build_absolute_uri(request.path)}?{query.urlencode()}>; rel="next"'
    return response


@hub_view
@require_http_methods(["POST"])
def paths_info(request: HttpRequest, namespace: str, name: str, revision: str) -> JsonResponse:
    """``get_paths_info``: the entries of the named paths that exist (form
    field ``paths``, repeated)."""
    _, model = _repo(request, namespace, name)
    resolved = selectors.revision_resolve(model=model, revision=revision)
    wanted = set(request.POST.getlist("paths"))
    entries = [serializers.tree_entry(f) for f in resolved.files if f["name"] in wanted]
    return JsonResponse(sorted(entries, key=lambda e: str(e["path"])), safe=False)


@hub_view
@require_http_methods(["GET", "POST"])
def xet_token(request: HttpRequest, namespace: str, name: str, revision: str) -> HttpResponse:
    """The first request of a Xet upload, refused so that the user learns the fix.

    hf_xet (Rust) makes this request and reports a failure as its status and
    final URL only — never a header or the body. So the repo's readers are
    redirected to :func:`xet_unsupported`, whose URL itself says what to do:
    ``… (400 Bad Request), domain: http://…/hf/xet-is-not-supported/set-HF_HUB_DISABLE_XET=1-and-retry``.
    Others get RepoNotFound, as on every route.
    """
    _repo(request, namespace, name)
    response = HttpResponse(status=307)
    response["Location"] = request.build_absolute_uri(reverse("hub:xet_unsupported"))
    response["X-Error-Message"] = XET_DISABLED_MESSAGE
    return response


@hub_view
def xet_unsupported(request: HttpRequest) -> HttpResponse:
    raise HubError(400, XET_DISABLED_MESSAGE, code="XetNotSupported")


@hub_view
@require_http_methods(["POST"])
def validate_yaml(request: HttpRequest) -> JsonResponse:
    """``upload_folder`` checks a README's YAML front matter before uploading."""
    content = str(_json_body(request).get("content") or "")
    problem = services.card_front_matter_problem(content)
    if problem:
        return JsonResponse({"error": problem, "errors": [{"message": problem}]}, status=400)
    return JsonResponse({"warnings": []})


@require_http_methods(["GET"])
def agent_harnesses(request: HttpRequest) -> JsonResponse:
    """The client fetches this registry once a day (``utils/_detect_agent.py``):
    an empty one, so that it is cached rather than asked for again."""
    return JsonResponse({"standardEnvVars": [], "harnesses": {}})


# --- upload: preupload, LFS batch, LFS PUT, commit -------------------------------


def _commit_revision(revision: str) -> None:
    if revision != "main":
        raise HubError(400, f"Commits go to main (each commit becomes a new version), not to {revision!r}.")


@hub_view
@require_http_methods(["POST"])
def preupload(request: HttpRequest, namespace: str, name: str, revision: str) -> JsonResponse:
    user, model = _repo(request, namespace, name)
    services.write_require(user=user, team=model.team)
    _commit_revision(revision)
    files = _json_body(request).get("files")
    if not isinstance(files, list):
        raise HubError(400, "'files' must be a list.")
    return JsonResponse({"files": services.preupload_modes(files)})


@hub_view
@require_http_methods(["POST"])
def lfs_batch(request: HttpRequest, namespace: str, name: str) -> JsonResponse:
    """Git LFS batch API, ``upload`` with the ``basic`` transfer."""
    user, model = _repo(request, namespace, name)
    services.write_require(user=user, team=model.team)
    data = _json_body(request)
    if data.get("operation") != "upload":
        raise HubError(400, "Only the LFS upload operation is supported; download files through /resolve/.")
    if "basic" not in (data.get("transfers") or ["basic"]):
        raise HubError(400, "Only the basic LFS transfer is supported.")
    if data.get("hash_algo", "sha256") != "sha256":
        raise HubError(400, "Only sha256 LFS objects are supported.")
    objects = data.get("objects")
    if not isinstance(objects, list):
        raise HubError(400, "'objects' must be a list.")

    def upload_href(token: str) -> str:
        return request.build_absolute_uri(reverse("hub:lfs_upload", args=[token]))

    answer = services.lfs_batch_objects(user=user, model=model, objects=objects, upload_href=upload_href)
    return JsonResponse({"transfer": "basic", "objects": answer, "hash_algo": "sha256"}, content_type=LFS_CONTENT_TYPE)


@hub_view
@require_http_methods(["PUT"])
def lfs_upload(request: HttpRequest, token: str) -> JsonResponse:
    """The basic transfer's PUT: the URL is the grant (the client sends no
    Authorization header here); the body streams into the store."""
    grant = services.lfs_upload_grant(token)
    model = RegisteredModel.objects.select_related("team").filter(pk=grant.model_id).first()
    user = get_user_model().objects.filter(pk=grant.user_id, is_active=True).first()
    if model is None or user is None:
        raise HubError(403, "This upload URL is no longer valid; start the upload again.")
    services.write_require(user=user, team=model.team)
    stored = services.lfs_upload_receive(grant=grant, request=request)
    return JsonResponse({"oid": stored.sha256, "size": stored.size})


@hub_view
@require_http_methods(["POST"])
def commit(request: HttpRequest, namespace: str, name: str, revision: str) -> JsonResponse:
    """NDJSON commit: header, inline files, LFS files, deletions → a version."""
    user, model = _repo(request, namespace, name)
    services.write_require(user=user, team=model.team)
    _commit_revision(revision)
    if request.GET.get("create_pr"):
        raise HubError(400, "Pull requests are not supported: commit to main.")
    parent = selectors.revision_resolve(model=model, revision="main")
    version = services.commit_apply(user=user, model=model, parent=parent, items=services.commit_lines(request))
    if version is None:
        oid = parent.commit
    else:
        version.registered_model = model
        oid = selectors.version_commit_id(version)
    url = f"{_repo_url(request, model)}/commit/{oid}"
    body: dict[str, Any] = {"commitUrl": url, "commitOid": oid, "success": True}
    if version is not None:
        body["version"] = version.version
    return JsonResponse(body)


# --- download ----------------------------------------------------------------------


@hub_view
@require_http_methods(["GET", "HEAD"])
def resolve(request: HttpRequest, namespace: str, name: str, revision: str, filename: str) -> HttpResponseBase:
    """``hf_hub_download``: HEAD for the metadata (``X-Repo-Commit``, the
    sha256 as ETag, sizes), GET for the bytes, with Range.

    The ETag is the file's sha256, so the client checks what it caches; no
    ``X-Xet-Hash`` is ever sent, so clients with hf_xet download over HTTP.
    """
    _, model = _repo(request, namespace, name)
    resolved = selectors.revision_resolve(model=model, revision=revision)
    entry = selectors.revision_file(revision=resolved, path=filename)
    if entry is None:
        raise entry_not_found(filename, resolved.commit)
    sha256, size = str(entry["sha256"]), int(entry["size"])
    etag = f'"{sha256}"'
    base = filename.rsplit("/", 1)[-1]
    common = {
        "X-Repo-Commit": resolved.commit,
        "ETag": etag,
        "X-Linked-Etag": etag,
        "X-Linked-Size": str(size),
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"attachment; filename=\"{base}\"; filename*=UTF-8''{quote(base)}",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=0",
    }
    # The client drops its Authorization header for another host: a presigned
    # URL needs none. A file stored split (tensors shared with other versions)
    # is no single object in the bucket: it is streamed below instead.
    url = (
        artifact_presigned_url(
            sha256,
            parameters={"ResponseContentDisposition": common["Content-Disposition"]},
            expire=settings.ARTIFACT_PRESIGNED_TTL_S,
        )
        if settings.ARTIFACT_STORAGE == "s3" and settings.ARTIFACT_PRESIGNED_DOWNLOADS and request.method == "GET"
        else None
    )
    if url is not None:
        redirect = HttpResponse(status=302)
        redirect["Location"] = url
        for key, value in common.items():
            redirect[key] = value
        return redirect
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        unchanged = HttpResponse(status=304)
        for key, value in common.items():
            unchanged[key] = value
        return unchanged
    wanted = request.headers.get("Range", "")
    if_range = request.headers.get("If-Range")
    if wanted and if_range is not None and if_range.strip() != etag:
        wanted = ""
    try:
        span = _parse_range(wanted, size)
    except RangeNotSatisfiable:
        refused = HttpResponse(status=416)
        refused["Content-Range"] = f"bytes */{size}"
        for key, value in common.items():
            refused[key] = value
        return refused
    response = ranged_file_response(
        sha256=sha256, size=size, span=span, head=request.method == "HEAD", content_type="application/octet-stream"
    )
    for key, value in common.items():
        response[key] = value
    return response


@hub_view
def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other /hf/ path (datasets, spaces, unsupported API): a JSON 404."""
    if request.path.startswith("/hf/api/models/") or "/resolve/" in request.path:
        raise repo_not_found()
    raise HubError(404, f"{request.path} is not part of this server's Hub API.")
