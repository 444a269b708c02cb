"""One JSON error shape for everything under /api/.

Every error answer is ``{"detail": "<sentence>", "code": "<machine code>"}``;
a validation error adds ``"errors": {"field": ["message", ...]}`` (problems
that concern the request as a whole go under ``"non_field_errors"``).

- DRF exceptions are shaped by :func:`exception_handler` (the project's
  ``EXCEPTION_HANDLER``); views raise ``ValidationError``, ``NotFound`` … and
  never build error bodies themselves.
- Django's own 404/500 (an unknown ``/api/v1/...`` path, an exception outside
  DRF) go through :func:`api_handler404` / :func:`api_handler500`, wired in
  ``modellibrary/urls.py``; other paths keep Django's template pages.
- A database that refuses work for a moment (SQLite "database is locked",
  PostgreSQL "too many clients") answers 503 with ``Retry-After``, from DRF
  views through the handler and from plain Django views through
  :class:`ApiDatabaseUnavailableMiddleware`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views import defaults
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
DB_RETRY_AFTER_S = 2


class ErrorSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The body of every error answer under /api/."""

    detail = serializers.CharField(help_text="A sentence for a person.")
    code = serializers.CharField(help_text="A stable machine code, e.g. `not_found`, `throttled`.")


class ValidationErrorSerializer(ErrorSerializer):
    """A 400: the shared error shape plus the problems by field."""

    errors = serializers.DictField(  # type: ignore[assignment]  # a declared field, popped by the metaclass
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages by request field; `non_field_errors` for the request as a whole.",
    )


class DatasetIssueSerializer(serializers.Serializer):  # type: ignore[type-arg]
    row = serializers.IntegerField(allow_null=True, help_text="1-based data row; null for the file as a whole.")
    column = serializers.CharField(allow_null=True)
    message = serializers.CharField()


class DatasetInvalidSerializer(ValidationErrorSerializer):
    """A 400 for a dataset file: the problems under `errors.file`, and each with its row and column."""

    issues = DatasetIssueSerializer(many=True, required=False, help_text="For a file's content (422).")


class ExcludedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    variant = serializers.CharField()
    constraint = serializers.CharField()
    reason = serializers.CharField()


class NoVariantSerializer(ErrorSerializer):
    """A 404 from resolve. When the model is visible but no variant meets the
    constraints (`code: no_variant`), it also says which were passed over and why."""

    model = serializers.CharField(required=False)
    version = serializers.IntegerField(allow_null=True, required=False)
    constraints = serializers.DictField(child=serializers.JSONField(), required=False)
    excluded = ExcludedSerializer(many=True, required=False)


class Unprocessable(exceptions.ValidationError):
    """422: the request is well formed (it matches the schema) but cannot be
    done as asked — it names something that does not exist (a taxonomy path, a
    base model, a dataset, a team), or its content is not valid (a dataset
    file). Same body as a 400: ``errors`` by field."""

    status_code = 422
    default_code = "unprocessable"


class ApiError(exceptions.APIException):
    """An API error with a chosen status and code, and extra members in its body
    (documented by an ErrorSerializer subclass)."""

    def __init__(
        self, status_code: int, detail: str, code: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail, code)
        self.status_code = status_code
        self.headers = headers or {}
        self.extra = extra


def error_body(detail: str, code: str, errors: dict[str, list[str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": detail, "code": code}
    if errors is not None:
        body["errors"] = errors
    return body


def error_json(status_code: int, detail: str, code: str) -> JsonResponse:
    return JsonResponse(error_body(detail, code), status=status_code)


# --- schema helpers: the error responses an operation can give ------------------------------

_DESCRIPTIONS = {
    400: "The request does not match the schema; `errors` lists every problem by field.",
    401: "Authentication failed (an unknown or inactive token).",
    403: "Not allowed, or authentication is required.",
    404: "Not found, or not visible to you (the same answer for both).",
    405: "Method not allowed on this route.",
    406: "None of the `Accept` types can be produced.",
    409: "The resource is in a state that does not allow the request.",
    410: "The resource existed but its content is gone.",
    413: "The request body is too large.",
    415: "Unsupported request content type.",
    416: "The requested byte range cannot be satisfied.",
    422: "The request is well formed but cannot be done: it names something that does not exist or its "
    "content is not valid; `errors` lists every problem by field.",
    429: "Too many requests; retry after `Retry-After` seconds.",
    503: "The database is busy; retry after `Retry-After` seconds.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """``responses`` entries for @extend_schema: the shared shape for each status."""
    out: dict[int, OpenApiResponse] = {}
    for code in codes:
        serializer = ValidationErrorSerializer if code in (400, 422) else ErrorSerializer
        out[code] = OpenApiResponse(serializer, description=_DESCRIPTIONS.get(code, "Error."))
    return out


# Every /api/ route can answer these (content negotiation, throttling, a busy database).
COMMON_ERRORS = (406, 429, 503)
NOT_FOUND_EXAMPLE = OpenApiExample(
    "not found", value=error_body("No model with that slug is visible to you.", "not_found"), response_only=True
)


# --- DRF exception handler ---------------------------------------------------------------


def _flatten(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [f"{k}: {m}" for k, v in detail.items() for m in _flatten(v)]
    if isinstance(detail, list):
        return [m for item in detail for m in _flatten(item)]
    return [str(detail)]


def _field_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """``{"field": [...], "nested.field": [...]}`` from DRF's nested error detail."""
    if not isinstance(detail, dict):
        return {prefix or "non_field_errors": _flatten(detail)}
    out: dict[str, list[str]] = {}
    for field, messages in detail.items():
        name = f"{prefix}.{field}" if prefix and field != "non_field_errors" else (prefix or str(field))
        if isinstance(messages, dict):
            out.update(_field_errors(messages, name))
        else:
            out.setdefault(name, []).extend(_flatten(messages))
    return out


def _first_code(codes: Any) -> str:
    if isinstance(codes, dict):
        for value in codes.values():
            return _first_code(value)
    if isinstance(codes, list) and codes:
        return _first_code(codes[0])
    return str(codes) if codes else "error"


def _validation_body(exc: exceptions.ValidationError) -> dict[str, Any]:
    errors = _field_errors(exc.detail)
    code = "unprocessable" if isinstance(exc, Unprocessable) else "invalid"
    problems = sum(len(v) for v in errors.values())
    if problems == 1:
        field, messages = next(iter(errors.items()))
        detail = messages[0] if field == "non_field_errors" else f"{field}: {messages[0]}"
    else:
        fields = ", ".join(f for f in errors if f != "non_field_errors")
        detail = f"The request is not valid ({problems} problem{'s' if problems != 1 else ''}" + (
            f": {fields})." if fields else ")."
        )
    return error_body(detail, code, errors)


def _api_exception_body(exc: exceptions.APIException) -> dict[str, Any]:
    if isinstance(exc, exceptions.ValidationError):
        return _validation_body(exc)
    if isinstance(exc, ApiError):
        return {**error_body(str(exc.detail), str(getattr(exc.detail, "code", "error"))), **exc.extra}
    detail = exc.detail
    if isinstance(detail, (dict, list)):
        messages = _flatten(detail)
        text = " ".join(messages) if messages else str(exc.default_detail)
        body = error_body(text, _first_code(exc.get_codes()))
    else:
        body = error_body(str(detail), str(getattr(detail, "code", None) or exc.default_code))
    if exc.status_code == 400:  # a malformed body (ParseError …): every 400 carries `errors`
        body["errors"] = {"non_field_errors": [body["detail"]]}
    return body


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    if isinstance(exc, (OperationalError, InterfaceError)):
        log.warning("database unavailable: %s", exc)
        return Response(
            error_body("The database is busy; retry shortly.", "database_unavailable"),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(DB_RETRY_AFTER_S)},
        )
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    response.data = _api_exception_body(exc)
    if isinstance(exc, ApiError):
        for name, value in exc.headers.items():
            response[name] = value
    return response


# --- Django's handlers and a middleware for non-DRF views -----------------------------------


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def api_handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api(request):
        return error_json(404, "No API route matches this path.", "not_found")
    return defaults.page_not_found(request, exception)  # type: ignore[arg-type]


def api_handler500(request: HttpRequest) -> HttpResponse:
    if is_api(request):
        if isinstance(sys.exc_info()[1], (OperationalError, InterfaceError)):
            response = error_json(503, "The database is busy; retry shortly.", "database_unavailable")
            response["Retry-After"] = str(DB_RETRY_AFTER_S)
            return response
        return error_json(500, "The server failed to answer this request.", "server_error")
    return defaults.server_error(request)


_STATUS_TEXT = {
    400: ("The request is not valid.", "invalid"),
    403: ("You are not allowed to do this.", "permission_denied"),
    404: ("No API route matches this path.", "not_found"),
    405: ("This method is not allowed on this route.", "method_not_allowed"),
    413: ("The request body is too large.", "too_large"),
    500: ("The server failed to answer this request.", "server_error"),
}
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "Content-Range", "Vary")


class ApiErrorMiddleware:
    """JSON errors for /api/ paths answered outside DRF.

    - a database that refuses work answers 503 + ``Retry-After``;
    - any other error answered as HTML or text under /api/ (Django's 404 from the
      URL resolver, ``require_http_methods``' 405, a 500, and with DEBUG on the
      technical pages) becomes the shared JSON shape, keeping its status and the
      headers that matter (``Allow``, ``Retry-After`` …).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and is_api(request)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            detail, code = _STATUS_TEXT.get(response.status_code, ("The request failed.", "error"))
            if response.status_code == 405:
                detail = f"Method {request.method} is not allowed on this route."
            shaped = error_json(response.status_code, detail, code)
            for header in _KEPT_HEADERS:
                if header in response:
                    shaped[header] = response[header]
            return shaped
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_api(request) and isinstance(exception, (OperationalError, InterfaceError)):
            log.warning("database unavailable on %s: %s", request.path, exception)
            response = error_json(503, "The database is busy; retry shortly.", "database_unavailable")
            response["Retry-After"] = str(DB_RETRY_AFTER_S)
            return response
        return None
