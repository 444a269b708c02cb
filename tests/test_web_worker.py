"""modellibrary.web_worker: keep-alive requests answered by the lingering
thread are the same answers, in order, whatever the pauses between them."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Echoes the path and query; ``/big`` answers 200 KB."""
    body = (
        b"x" * 200_000
        if environ["PATH_INFO"] == "/big"
        else (environ["PATH_INFO"] + "?" + environ["QUERY_STRING"]).encode()
    )
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server() -> Any:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "tests.test_web_worker:app", "-b", f"127.0.0.1:{port}"]
        + ["-k", "modellibrary.web_worker.LingerThreadWorker", "--threads", "4", "-w", "1", "--keep-alive", "5"],
        cwd=ROOT,
        env={**os.environ, "WEB_LINGER_MS": "20"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(20)


def test_keep_alive_requests_with_and_without_pauses(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    for i in range(30):
        # Back to back (the lingering thread answers), then pauses shorter and
        # longer than the linger time (the connection goes back to the poller).
        if i % 10 == 8:
            time.sleep(0.01)
        elif i % 10 == 9:
            time.sleep(0.1)
        path = "/big" if i % 7 == 3 else f"/r{i}"
        conn.request("GET", f"{path}?n={i}")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200
        assert body == (b"x" * 200_000 if path == "/big" else f"{path}?n={i}".encode())
    conn.close()


def test_other_connections_are_served_while_one_lingers(server: int) -> None:
    first = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    first.request("GET", "/a")
    assert first.getresponse().read() == b"/a?"
    # ``first``'s thread may be waiting for its next request: others still get answers.
    for i in range(5):
        other = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
        other.request("GET", f"/b{i}", headers={"Connection": "close"})
        assert other.getresponse().read() == f"/b{i}?".encode()
        other.close()
    first.request("GET", "/c")
    assert first.getresponse().read() == b"/c?"
