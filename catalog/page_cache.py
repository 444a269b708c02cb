"""Whole-response cache for the catalogue's hot read routes.

The catalogue page, the model page, and the API's search, model detail and
resolve answers are the same for everyone who sees the same catalogue, until
the catalogue changes. Each answer is cached under

    (route, host, path and query, Accept, htmx headers, viewer, generation token)

where the viewer is the authenticated user's id (API token or session) or
"anonymous", and the generation token is ``CatalogState.token``, changed by
every catalogue write in any process (catalog/signals.py): a write makes every
cached answer unreachable at once. ``PAGE_CACHE_SECONDS`` bounds what a write
that bypasses the signals (a bulk ``update()``: download counters) can leave
stale; 0 turns the cache off.

What is never cached: other methods than GET/HEAD, non-200 answers, answers
that set cookies or that the session touched, streaming answers, and pages of
a signed-in browser session. An HTML page's CSRF token (present on every page
for htmx) is stored as a placeholder and replaced by a token for the current
client on each hit, so the CSRF cookie and the page always agree. On an API
hit the API's authentication and throttles still run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.csrf import get_token
from django.urls import Resolver404, resolve

CACHED_VIEWS = {
    "catalog:index",
    "catalog:model_detail",
    "api:models",
    "api:model",
    "api:resolve",
}
API_VIEWS = {"api:models", "api:model", "api:resolve"}
KEPT_HEADERS = ("Content-Type", "Vary", "Content-Language", "Allow")
_PLACEHOLDER = b"\x00csrf-token\x00"
_CSRF_VALUE = re.compile(rb'(?:name="csrfmiddlewaretoken" value="|"X-CSRFToken": ")([A-Za-z0-9]{32,64})"')


def page_cache() -> Any:
    return caches[settings.PAGE_CACHE_ALIAS]


def catalog_token() -> str:
    from catalog.models import CatalogState
    from catalog.selectors.live_state import known_token

    # Without a query when this process's listener knows it (catalog.selectors.live_state).
    return known_token() or CatalogState.objects.filter(pk=1).values_list("token", flat=True).first() or "none"


class _NotCacheable(Exception):
    pass


def _api_viewer(request: HttpRequest) -> tuple[Any, Any]:
    """The API's own authentication (token, then session) for this request,
    and the DRF request it ran on. Raises _NotCacheable when it fails: the
    view then answers (401) as it always does."""
    from rest_framework import exceptions
    from rest_framework.authentication import SessionAuthentication
    from rest_framework.request import Request
    from rest_framework.settings import api_settings

    drf_request = Request(request)
    classes: Any = api_settings.DEFAULT_AUTHENTICATION_CLASSES
    for cls in classes:
        if issubclass(cls, SessionAuthentication):
            continue  # the session user is request.user already (GET: no CSRF check)
        try:
            result = cls().authenticate(drf_request)
        except exceptions.APIException as exc:
            raise _NotCacheable from exc
        if result is not None:
            return result[0], drf_request
    return request.user, drf_request  # type: ignore[attr-defined]


def _api_throttled(drf_request: Any, user: Any) -> bool:
    from rest_framework.settings import api_settings

    drf_request.user = user
    classes: Any = api_settings.DEFAULT_THROTTLE_CLASSES
    return any(not cls().allow_request(drf_request, None) for cls in classes)


class PageCacheMiddleware:
    """See the module docstring. Sits after the authentication middleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        seconds = settings.PAGE_CACHE_SECONDS
        if seconds <= 0 or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        try:
            view_name = resolve(request.path_info).view_name
        except Resolver404:
            return self.get_response(request)
        if view_name not in CACHED_VIEWS:
            return self.get_response(request)
        try:
            key, drf = self._key(request, view_name)
        except _NotCacheable:
            return self.get_response(request)
        cache = page_cache()
        hit = cache.get(key)
        if hit is not None and not (drf is not None and _api_throttled(*drf)):
            return self._response(request, hit)
        response = self.get_response(request)
        entry = self._entry(request, response)
        if entry is not None:
            cache.set(key, entry, seconds)
        return response

    def _key(self, request: HttpRequest, view_name: str) -> tuple[str, tuple[Any, Any] | None]:
        drf = None
        if view_name in API_VIEWS:
            user, drf_request = _api_viewer(request)
            drf = (drf_request, user)
        else:
            user = request.user  # type: ignore[attr-defined]
            if user.is_authenticated or settings.SESSION_COOKIE_NAME in request.COOKIES:
                raise _NotCacheable  # a browser session's page may carry its messages, forms…
        viewer = f"u{user.pk}" if user.is_authenticated else "anon"
        parts = [
            view_name,
            request.scheme or "http",
            request.get_host(),
            request.get_full_path(),
            request.headers.get("Accept") or "",
            request.headers.get("HX-Request") or "",
            request.headers.get("HX-Target") or "",
            request.headers.get("HX-Boosted") or "",
            viewer,
            catalog_token(),
        ]
        return "page:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest(), drf

    def _entry(self, request: HttpRequest, response: HttpResponseBase) -> dict[str, Any] | None:
        if (
            response.status_code != 200
            or response.streaming
            or response.cookies
            or not isinstance(response, HttpResponse)
            or getattr(getattr(request, "session", None), "modified", False)
        ):
            return None
        content = response.content
        if request.META.get("CSRF_COOKIE_NEEDS_UPDATE"):
            # One render uses one masked token; every occurrence of it (a
            # random 64-character string) becomes the placeholder.
            tokens = {m.group(1) for m in _CSRF_VALUE.finditer(content)}
            if len(tokens) != 1:
                return None  # a token we cannot find for sure: never share the page
            content = content.replace(tokens.pop(), _PLACEHOLDER)
        return {
            "content": content,
            "headers": {h: response[h] for h in KEPT_HEADERS if response.has_header(h)},
        }

    def _response(self, request: HttpRequest, entry: dict[str, Any]) -> HttpResponse:
        content = entry["content"]
        if _PLACEHOLDER in content:
            content = content.replace(_PLACEHOLDER, get_token(request).encode())
        response = HttpResponse(content)
        for h, v in entry["headers"].items():
            response[h] = v
        response["X-Page-Cache"] = "hit"
        return response
