"""django-csp's middleware, with the policy built once per settings.

``csp.middleware.CSPMiddleware`` builds both headers from the settings on
every response (two ``build_policy`` runs and two ``asdict`` copies: ~0.1 ms,
a tenth of an API search's time in the app). Without a per-view override
(``@csp_update`` …) or a nonce, a header depends only on the settings, so it
is kept here while the settings objects stay the same ones (a test that
overrides them gets a new build). Anything else goes to django-csp as is.
"""

from __future__ import annotations

import http.client as http_client
import threading
from typing import Any

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject, PolicyParts
from csp.middleware import CSPMiddleware as _CSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

_PLAIN = PolicyParts()
_lock = threading.Lock()
# (the policy settings objects it was built from, the header, the report-only header)
_built: tuple[Any, Any, str, str] | None = None


def _headers() -> tuple[str, str]:
    global _built
    policy = getattr(settings, "CONTENT_SECURITY_POLICY", None)
    report_only = getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
    built = _built
    if built is None or built[0] is not policy or built[1] is not report_only:
        with _lock:
            built = _built = (policy, report_only, build_policy(), build_policy(report_only=True))
    return built[2], built[3]


class CSPMiddleware(_CSPMiddleware):
    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if (
            self.get_policy_parts(request=request, response=response) != _PLAIN
            or self.get_policy_parts(request=request, response=response, report_only=True) != _PLAIN
            or (response.status_code in (http_client.INTERNAL_SERVER_ERROR, http_client.NOT_FOUND) and settings.DEBUG)
        ):
            return super().process_response(request, response)
        # The rest is django-csp's process_response with the headers built already.
        csp, csp_ro = _headers()
        for header, value, exempt, setting in (
            (HEADER, csp, "_csp_exempt", "CONTENT_SECURITY_POLICY"),
            (HEADER_REPORT_ONLY, csp_ro, "_csp_exempt_ro", "CONTENT_SECURITY_POLICY_REPORT_ONLY"),
        ):
            if not value or getattr(response, exempt, False) is not False or header in response:
                continue
            prefixes = (getattr(settings, setting, None) or {}).get("EXCLUDE_URL_PREFIXES", None) or ()
            if not request.path_info.startswith(tuple(prefixes)):
                response[header] = value
        # As django-csp: a nonce asked for after the header is written is an error.
        if getattr(request, "_csp_nonce", None) is None:
            request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)  # type: ignore[attr-defined]
        return response
