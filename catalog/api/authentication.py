"""DRF authentication with hashed API tokens (``catalog.services.tokens``).

Keeps the header format of ``rest_framework.authtoken`` —
``Authorization: Token <key>`` — and also accepts ``Bearer <key>``.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

KEYWORDS = (b"token", b"bearer")


def authorization_key(request: Any) -> str | None:
    """The raw key from the Authorization header; None when there is no token
    header. Raises AuthenticationFailed for a malformed one."""
    auth = get_authorization_header(request).split()
    if not auth or auth[0].lower() not in KEYWORDS:
        return None
    if len(auth) != 2:
        raise exceptions.AuthenticationFailed("Invalid token header: use 'Authorization: Token <key>'.")
    try:
        return str(auth[1].decode())
    except UnicodeError:
        raise exceptions.AuthenticationFailed("Invalid token header: the key has invalid characters.") from None


class ApiTokenAuthentication(BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        from catalog.services.tokens import api_token_user

        key = authorization_key(request)
        if key is None:
            return None
        user = api_token_user(key)
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        return user, None

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


try:
    from drf_spectacular.extensions import OpenApiAuthenticationExtension

    class ApiTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
        target_class = "catalog.api.authentication.ApiTokenAuthentication"
        name = "tokenAuth"

        def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
            return {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "`Token <key>` (or `Bearer <key>`); create a key on your profile page.",
            }
except ImportError:  # pragma: no cover - drf-spectacular is a run-time dependency
    pass
