"""API tokens, stored hashed.

A key is ``mlk_`` + 43 random URL-safe characters (256 bits). Only its
sha256 and its first ``PREFIX_LENGTH`` characters are stored: the raw key is
returned once by ``api_token_create`` and cannot be shown again. Clients send
``Authorization: Token <key>`` (``Bearer <key>`` works too, which is what
``huggingface_hub`` sends with ``HF_TOKEN``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.utils import timezone

from catalog.models import ApiToken

KEY_PREFIX = "mlk_"
PREFIX_LENGTH = 12
MAX_ACTIVE_TOKENS = 50
# last_used_at is written at most this often per token (a write per request
# would turn every authenticated read into a write).
LAST_USED_RESOLUTION_S = 60


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_create(*, user: Any, name: str) -> str:
    """Create a token for ``user`` and return its raw key (shown once)."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the token a name (e.g. the machine or script that uses it)."})
    if len(name) > 100:
        raise ValidationError({"name": "A token name has at most 100 characters."})
    if ApiToken.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_ACTIVE_TOKENS:
        raise ValidationError({"name": f"You already have {MAX_ACTIVE_TOKENS} active tokens; revoke one first."})
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, name=name, prefix=key[:PREFIX_LENGTH], key_sha256=_digest(key))
    return key


def api_token_revoke(*, user: Any, token_id: int) -> ApiToken:
    """Revoke one of ``user``'s own tokens (superusers may revoke any)."""
    token = ApiToken.objects.filter(pk=token_id).first()
    if token is None or (token.user_id != user.pk and not user.is_superuser):
        raise PermissionDenied("No such token of yours.")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_tokens_of(*, user: Any) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("revoked_at", "-created_at")


def api_token_user(key: str) -> Any | None:
    """The active user behind a raw key, or None (unknown, revoked, inactive user)."""
    if not key or len(key) > 200:
        return None
    digest = _digest(key)
    for token in ApiToken.objects.select_related("user").filter(prefix=key[:PREFIX_LENGTH], revoked_at__isnull=True):
        if hmac.compare_digest(token.key_sha256, digest):
            if not token.user.is_active:
                return None
            now = timezone.now()
            if token.last_used_at is None or (now - token.last_used_at).total_seconds() > LAST_USED_RESOLUTION_S:
                ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
            return token.user
    return None
