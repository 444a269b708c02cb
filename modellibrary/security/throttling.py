"""API request rates (DRF throttles) and the failed-authentication limit.

- :class:`ApiUserRateThrottle` / :class:`ApiAnonRateThrottle`: requests per
  user (token or session) and per anonymous client address, from
  ``API_THROTTLE_USER`` / ``API_THROTTLE_ANON`` (``"off"`` disables one). They
  count in the ``default`` cache: per process unless ``CACHE_URL`` names a
  shared one (Redis), so a rate is approximate across web processes.
- :class:`AuthFailureThrottleMiddleware`: a client address whose requests
  carried wrong credentials (answered 401) ``AUTH_FAILURE_LIMIT`` times within
  ``AUTH_FAILURE_WINDOW_S`` seconds gets 429 with ``Retry-After`` for every
  request that carries an ``Authorization`` header until the window ends, a
  right token included (a guess that lands after the limit is no use).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from modellibrary.security.failures import auth_failure_limit, client_ip, failure_record, locked_for

_OFF = {"", "off", "none", "0"}


def _rate(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in _OFF else value.strip()


class ApiUserRateThrottle(UserRateThrottle):
    """Requests per authenticated user (anonymous clients: per address)."""

    def get_rate(self) -> str | None:  # read at request time: settings may change in tests
        return _rate(settings.API_THROTTLE_USER)


class ApiAnonRateThrottle(AnonRateThrottle):
    """Requests per anonymous client address."""

    def get_rate(self) -> str | None:
        return _rate(settings.API_THROTTLE_ANON)


def throttled_response(wait_s: int, detail: str) -> JsonResponse:
    response = JsonResponse({"detail": detail, "code": "throttled"}, status=429)
    response["Retry-After"] = str(max(1, wait_s))
    return response


class AuthFailureThrottleMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if "HTTP_AUTHORIZATION" not in request.META:
            return self.get_response(request)
        limit = auth_failure_limit()
        ip = client_ip(request)
        wait = locked_for(limit, ip)
        if wait:
            return throttled_response(
                wait, f"Too many failed authentication attempts from your address. Retry in {wait} s."
            )
        response = self.get_response(request)
        if response.status_code == 401:
            failure_record(limit, ip)
        return response
