"""Password authentication with a lockout per username and client address.

Every password check (the login page, the admin's login, any ``authenticate``
call with a request) goes through :class:`LockoutModelBackend`: after
``LOGIN_FAILURE_LIMIT`` wrong passwords for one username from one address
within ``LOGIN_LOCKOUT_S`` seconds, that pair is refused, the right password
included, until the lock ends. Locking by username *and* address keeps one
attacker from locking a user out from everywhere. One address that fails
``LOGIN_IP_FAILURE_LIMIT`` times over any usernames in that time (password
spraying) is locked for every username.
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
    login_ip_failure_limit,
)


def login_ident(request: HttpRequest | None, username: str | None) -> str:
    return f"{(username or '').strip().lower()}|{client_ip(request)}"


def login_locked_for(request: HttpRequest | None, username: str | None) -> int:
    """Seconds left on the lock of this username from this address (0: none)."""
    return max(
        locked_for(login_failure_limit(), login_ident(request, username)),
        locked_for(login_ip_failure_limit(), client_ip(request)),
    )


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
        if login_locked_for(request, username):
            raise PermissionDenied("locked")  # ends authenticate(): no other backend tries
        user = super().authenticate(request, username=username, password=password, **kwargs)
        ident = login_ident(request, username)
        if user is None:
            failure_record(login_failure_limit(), ident)
            failure_record(login_ip_failure_limit(), client_ip(request))
        else:
            failures_clear(login_failure_limit(), ident)
        return user
