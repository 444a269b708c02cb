"""The one place the API tests make a token: a change of token scheme is one edit here."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient


def token_for(user: Any) -> str:
    from catalog.services.tokens import api_token_create

    return str(api_token_create(user=user, name="test"))


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client
