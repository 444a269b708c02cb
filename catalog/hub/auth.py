"""Who is calling: the project's DRF authentication, with ``Bearer`` accepted.

``huggingface_hub`` sends ``Authorization: Bearer <HF_TOKEN>``. The catalogue's
API tokens are read by the authentication classes in
``REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]`` (``Token <key>``); each of
those derived from DRF's ``TokenAuthentication`` (which reads one keyword) is
run a second time with the keyword ``Bearer``; classes that read ``Bearer``
themselves run once. Whatever token model is current serves the Hub routes.
Session cookies count for safe methods only (a browser following a download
link); writes need a token.
"""

from __future__ import annotations

from functools import cache
from typing import Any, cast

from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.settings import api_settings

from catalog.hub.errors import HubError

# The exact message makes the client raise a plain 401 error rather than
# "repository not found" (utils/_http.py).
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


@cache
def _authenticator_classes(safe: bool) -> tuple[type[BaseAuthentication], ...]:
    classes: list[type[BaseAuthentication]] = []
    configured = cast(list[type[BaseAuthentication]], api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    for cls in configured:
        if issubclass(cls, SessionAuthentication):
            if safe:
                classes.append(cls)
            continue
        classes.append(cls)
        # DRF's TokenAuthentication reads only its own keyword; a class that
        # already takes Bearer needs no twin.
        if issubclass(cls, TokenAuthentication) and cls.keyword.lower() != "bearer":
            classes.append(type(f"Bearer{cls.__name__}", (cls,), {"keyword": "Bearer"}))
    return tuple(classes)


def hub_user(request: HttpRequest) -> Any:
    """The authenticated user, or an anonymous one.

    Raises:
        HubError: 401 for a token that no authenticator accepts.
    """
    safe = request.method in ("GET", "HEAD", "OPTIONS")
    drf_request = Request(request, authenticators=[cls() for cls in _authenticator_classes(safe)])
    try:
        return drf_request.user
    except APIException as exc:
        raise HubError(401, INVALID_CREDENTIALS) from exc
