"""The CSP middleware that keeps the built policy writes what django-csp writes."""

from __future__ import annotations

from typing import Any

import pytest
from csp.middleware import CSPMiddleware as DjangoCSPMiddleware
from django.http import HttpResponse
from django.test import RequestFactory

from modellibrary.security.csp import CSPMiddleware


def _headers(middleware_class: type, response: HttpResponse, path: str = "/api/v1/models/") -> dict[str, str]:
    request = RequestFactory().get(path)
    middleware = middleware_class(lambda r: response)
    middleware.process_request(request)
    out = middleware.process_response(request, response)
    return {h: out[h] for h in ("Content-Security-Policy", "Content-Security-Policy-Report-Only") if h in out}


def _directives(header: str) -> dict[str, str]:
    # django-csp orders directives by set iteration: compare them as a mapping.
    return dict(d.strip().split(" ", 1) for d in header.split(";") if d.strip())


def _same(a: dict[str, str], b: dict[str, str]) -> bool:
    return a.keys() == b.keys() and all(_directives(a[h]) == _directives(b[h]) for h in a)


def test_plain_response_gets_django_csps_header() -> None:
    ours = _headers(CSPMiddleware, HttpResponse())
    assert ours["Content-Security-Policy"]
    assert _same(ours, _headers(DjangoCSPMiddleware, HttpResponse()))
    assert _headers(CSPMiddleware, HttpResponse()) == ours  # kept: the same string again


def test_new_settings_give_a_new_policy(settings: Any) -> None:
    before = _headers(CSPMiddleware, HttpResponse())
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"img-src": ["'self'"]}}
    after = _headers(CSPMiddleware, HttpResponse())
    assert after != before
    assert _same(after, _headers(DjangoCSPMiddleware, HttpResponse()))
    assert "Content-Security-Policy-Report-Only" in after


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("_csp_update", {"img-src": ["https://example.org"]}),
        ("_csp_replace", {"script-src": ["'self'", "https://cdn.example.org"]}),
        ("_csp_exempt", True),
    ],
)
def test_per_view_overrides_go_to_django_csp(attribute: str, value: Any) -> None:
    ours, theirs = HttpResponse(), HttpResponse()
    setattr(ours, attribute, value)
    setattr(theirs, attribute, value)
    assert _same(_headers(CSPMiddleware, ours), _headers(DjangoCSPMiddleware, theirs))


def test_a_header_already_set_is_kept() -> None:
    response = HttpResponse()
    response["Content-Security-Policy"] = "default-src 'none'"
    assert _headers(CSPMiddleware, response)["Content-Security-Policy"] == "default-src 'none'"
