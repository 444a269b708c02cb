"""Errors in the shape ``huggingface_hub`` reads.

The client picks its exception class from ``X-Error-Code`` (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``) and shows ``X-Error-Message`` plus the
body's ``error`` to the user (``utils/_http.py: hf_raise_for_status``). The body
also carries the project's ``detail``/``code`` so that every JSON error of the
catalogue has those two keys.
"""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse


class HubError(Exception):
    """An answer to give instead of the view's result."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str = "",
        headers: dict[str, str] | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}


def repo_not_found() -> HubError:
    # One answer for a missing repo and for one the caller may not see.
    return HubError(404, "Repository not found.", code="RepoNotFound")


def revision_not_found(revision: str) -> HubError:
    return HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")


def entry_not_found(path: str, commit: str) -> HubError:
    # X-Repo-Commit lets the client cache that the file does not exist there.
    return HubError(
        404,
        f"Entry not found: {path}",
        code="EntryNotFound",
        headers={"X-Repo-Commit": commit},
    )


_CODES = {400: "invalid", 401: "not_authenticated", 403: "permission_denied", 404: "not_found", 409: "conflict"}


def error_response(error: HubError, *, head: bool = False) -> HttpResponse:
    body = {"error": error.message, "detail": error.message, "code": _CODES.get(error.status, "error"), **error.extra}
    response: HttpResponse = HttpResponse(status=error.status) if head else JsonResponse(body, status=error.status)
    # Header values must be latin-1 and on one line.
    response["X-Error-Message"] = " ".join(error.message.split()).encode("latin-1", "replace").decode("latin-1")
    if error.code:
        response["X-Error-Code"] = error.code
    for name, value in error.headers.items():
        response[name] = value
    return response
