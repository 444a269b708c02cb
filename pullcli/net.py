"""What ``pull`` and ``push`` share: credentials scoped to the API's origin,
bounded JSON replies, error messages a terminal can show safely, a progress bar.

Standard library only.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, Any

CHUNK = 1 << 20
MAX_JSON_BYTES = 4 << 20
MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = (301, 302, 303, 307, 308)

Origin = tuple[str, str, int]


class CliError(Exception):
    """A failure to report in one line (or a few) and exit with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def printable(value: object, limit: int = 300) -> str:
    """``value`` as text a terminal shows as-is: control, bidi and other
    invisible characters escaped (a server's strings may carry ANSI sequences)."""
    text = value if isinstance(value, str) else repr(value)
    text = text[:limit] + ("…" if len(text) > limit else "")
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def origin(url: str) -> Origin:
    """(scheme, host, port) of an http(s) URL; anything else is refused."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CliError(f"not a valid URL: {printable(url)}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise CliError(f"not an http(s) URL: {printable(url)}")
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand every redirect back to :func:`open_url`, which decides what it may carry."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


opener = urllib.request.build_opener(_NoRedirect)
"""urllib without automatic redirects: a POST is never replayed elsewhere, nor a token."""


def auth_headers(url: str, api: str, token: str | None) -> dict[str, str]:
    """The ``Authorization`` header, only for a URL of the API's own origin."""
    return {"Authorization": f"Token {token}"} if token and origin(url) == origin(api) else {}


def open_url(
    url: str,
    *,
    api: str,
    token: str | None,
    headers: dict[str, str] | None = None,
    api_headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Any:
    """GET ``url``, following up to five redirects.

    The token goes only to the API's own origin (scheme, host and port, as
    ``requests`` decides): a redirect to an object store or any other host
    carries no ``Authorization`` (and this client never sends cookies).
    ``headers`` (``Range``) follow every redirect; ``api_headers`` (an
    ``If-Range`` naming the API's ETag) go to the API's origin only.
    """
    for _ in range(MAX_REDIRECTS + 1):
        own = origin(url) == origin(api)
        request = urllib.request.Request(
            url, headers={**(headers or {}), **((api_headers or {}) if own else {}), **auth_headers(url, api, token)}
        )
        try:
            return opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code not in _REDIRECTS:
                raise
            location = exc.headers.get("Location")
            exc.close()
            if not location:
                raise CliError(f"HTTP {exc.code} redirect without a Location from {printable(url)}") from exc
            url = urllib.parse.urljoin(url, location)
            origin(url)  # http(s) only: never file:// or ftp://
    raise CliError(f"more than {MAX_REDIRECTS} redirects")


def loads(body: bytes | str) -> Any:
    """``json.loads``, with a hostile nesting depth reported as ``ValueError`` too."""
    try:
        return json.loads(body)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def read_json(response: IO[bytes], what: str) -> dict[str, Any]:
    """A JSON object of at most ``MAX_JSON_BYTES`` from ``response``."""
    body = response.read(MAX_JSON_BYTES + 1)
    if len(body) > MAX_JSON_BYTES:
        raise CliError(f"{what}: the server's reply is over {MAX_JSON_BYTES} bytes")
    try:
        value = loads(body)
    except ValueError as exc:
        raise CliError(f"{what}: the server's reply is not JSON: {printable(body[:200])}") from exc
    if not isinstance(value, dict):
        raise CliError(f"{what}: the server's reply is not a JSON object")
    return value


def error_lines(what: str, status: int, body: bytes) -> list[str]:
    """The server's JSON error (``detail``, ``code``, field ``errors``) as lines."""
    try:
        detail = loads(body)
    except ValueError:
        detail = None
    if not isinstance(detail, dict):
        return [f"{what}: HTTP {status}: {printable(body.decode(errors='replace'))}"]
    code = f" [{printable(detail['code'], 60)}]" if detail.get("code") else ""
    lines = [f"{what}: HTTP {status}{code}: {printable(detail.get('detail', detail))}"]
    errors = detail.get("errors")
    if isinstance(errors, dict):
        for field, messages in errors.items():
            for message in messages if isinstance(messages, list) else [messages]:
                lines.append(f"  - {printable(field, 60)}: {printable(message)}")
    return lines


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int, start: int = 0, stream: IO[str] | None = None) -> None:
        self.total, self.done, self.initial = total, start, start
        self.stream = stream if stream is not None else sys.stderr
        self.started, self.last = time.monotonic(), 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.1 or self.done >= self.total:
            self.last = now
            frac = min(self.done / self.total, 1.0) if self.total else 1.0
            rate = (self.done - self.initial) / max(now - self.started, 1e-6) / 1e6
            bar = "#" * int(frac * 30)
            self.stream.write(
                f"\r[{bar:<30}] {frac:6.1%} {self.done / 1e6:8.1f}/{self.total / 1e6:.1f} MB {rate:6.1f} MB/s"
            )
            self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
