"""Counting failures per key with a lockout, in the shared ``security`` cache.

A key (a client address, or a username and an address) that fails ``limit``
times within ``window_s`` seconds is locked for ``lockout_s`` seconds. The
cache is the database one by default, so every web worker process sees the
same counts (a per-process memory cache would multiply the limit by the number
of processes). Counting is read-then-write: concurrent failures may overshoot
the limit by the number of requests in flight, never more.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle


@dataclass(frozen=True)
class FailureLimit:
    name: str
    limit: int
    window_s: int
    lockout_s: int


def auth_failure_limit() -> FailureLimit:
    """Wrong API credentials per client address."""
    window = settings.AUTH_FAILURE_WINDOW_S
    return FailureLimit("authfail", settings.AUTH_FAILURE_LIMIT, window, window)


def login_failure_limit() -> FailureLimit:
    """Wrong passwords per username and client address."""
    lockout = settings.LOGIN_LOCKOUT_S
    return FailureLimit("loginfail", settings.LOGIN_FAILURE_LIMIT, lockout, lockout)


def login_ip_failure_limit() -> FailureLimit:
    """Wrong passwords from one client address, whatever the username."""
    lockout = settings.LOGIN_LOCKOUT_S
    return FailureLimit("loginipfail", settings.LOGIN_IP_FAILURE_LIMIT, lockout, lockout)


def client_ip(request: HttpRequest | None) -> str:
    """The client's address as DRF's throttles see it (``NUM_PROXIES`` decides
    how much of X-Forwarded-For is trusted)."""
    if request is None:
        return "-"
    return str(BaseThrottle().get_ident(request))  # type: ignore[arg-type]


def _cache() -> BaseCache:
    return caches[settings.SECURITY_CACHE]


def _key(limit: FailureLimit, ident: str) -> str:
    return f"{limit.name}:{hashlib.sha256(ident.encode()).hexdigest()}"


def locked_for(limit: FailureLimit, ident: str) -> int:
    """Seconds left on the lock of ``ident`` (0: not locked)."""
    state: dict[str, Any] | None = _cache().get(_key(limit, ident))
    if not state:
        return 0
    left = float(state.get("until", 0)) - time.time()
    return math.ceil(left) if left > 0 else 0


def failure_record(limit: FailureLimit, ident: str) -> int:
    """Count one failure; returns the seconds ``ident`` is now locked for (0: not)."""
    now = time.time()
    key = _key(limit, ident)
    state: dict[str, Any] | None = _cache().get(key)
    if not state or now - float(state["first"]) > limit.window_s:
        state = {"n": 0, "first": now, "until": 0.0}
    state["n"] += 1
    if state["n"] >= limit.limit:
        state["until"] = now + limit.lockout_s
    _cache().set(key, state, timeout=max(limit.window_s, limit.lockout_s) + 1)
    return math.ceil(state["until"] - now) if state["until"] else 0


def failures_clear(limit: FailureLimit, ident: str) -> None:
    _cache().delete(_key(limit, ident))
