"""Every API error is JSON: DRF's handler, plus a JSON 404/500 body for Django's."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        return Response({"detail": str(exc) or "Not found."}, status=404)
    return drf_exception_handler(exc, context)
