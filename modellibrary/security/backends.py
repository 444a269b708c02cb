"""Password authentication with a lockout per username and client address.

Every password check (the login page, the admin's login, any ``authenticate``
call with a request) goes through :class:`LockoutModelBackend`: after
``LOGIN_FAILURE_LIMIT`` wrong passwords for one username from one address
within ``LOGIN_LOCKOUT_S`` seconds, that pair is refused, the right password
included, until the lock ends. Locking by username *and* address keeps one
attacker from locking a user out from everywhere.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from modellibrary.security.failures import (
    client_ip,
    failure_record,
    failures_clear,
    locked_for,
    login_failure_limit,
)


def login_ident(request: HttpRequest | None, username: str | None) -> str:
    return f"{(username or '').strip().lower()}|{client_ip(request)}"


def login_locked_for(request: HttpRequest | None, username: str | None) -> int:
    return locked_for(login_failure_limit(), login_ident(request, username))


class LockoutModelBackend(ModelBackend):
    def authenticate(  # type: ignore[override]  # ModelBackend's own signature
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if username is None:
            username = kwargs.get("username")
        if username is None or password is None:
            return None
        limit = login_failure_limit()
        ident = login_ident(request, username)
        if locked_for(limit, ident):
            raise PermissionDenied("locked")  # ends authenticate(): no other backend tries
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            failure_record(limit, ident)
        else:
            failures_clear(limit, ident)
        return user
