"""The catalogue's generation token without a query per request (PostgreSQL).

Every search and model answer must know whether the in-memory facet index (and
the ready JSON on it) is current: the ``CatalogState`` token. Reading it costs
one round trip to PostgreSQL per request — on a loaded machine a round trip is
milliseconds of waiting for the server process to be scheduled, more than the
rest of a cached answer. Instead each web process keeps one listening
connection: migration 0006's triggers send ``catalog_state`` (payload: the new
token) when a transaction that changed the token commits, and
``catalog_downloads`` when a download counter is bumped.

When the token is trusted, and when it is not (then callers read the database
as before):

* the listener is up: connected, ``LISTEN`` issued, then the current token
  read (a notification racing that read is applied after it, in order);
* no write of *this* process is still waiting for its own notification —
  ``catalog_changed`` records each token it writes (``pending``), and the token
  is trusted again only once that token's notification has arrived, so a
  process always reads its own writes (a token whose transaction rolled back
  is forgotten after ``PENDING_FORGET_S``; tokens written before the listener
  connected are covered by the token it reads then — a transaction still
  open across a (re)connect is seen when its notification arrives);
* a connection error marks the listener down until it has reconnected.

Another process's write reaches this one when its notification is handled
(typically well under a millisecond after the commit; not "at once" as a read
per request was). SQLite, and ``CATALOG_STATE_LISTEN = False``, read the token
on every request.
"""

from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger(__name__)

PENDING_FORGET_S = 60.0
RECONNECT_S = 1.0
POLL_S = 30.0


class _Listener:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = 0
        self.token: str | None = None
        self.healthy = False
        self.pending: dict[str, float] = {}  # tokens this process wrote → when
        self.downloads = 0  # bumped on every download notification (and reconnect)
        self.thread: threading.Thread | None = None
        self.stopping = False

    # --- callers ---------------------------------------------------------------------------

    def known_token(self) -> str | None:
        """The current token, or None when the database must be asked."""
        self._ensure_started()
        with self.lock:
            if not self.healthy or self.token is None:
                return None
            if self.pending:
                now = time.monotonic()
                for token, since in list(self.pending.items()):
                    if now - since > PENDING_FORGET_S:
                        del self.pending[token]
                if self.pending:
                    return None
            return self.token

    def downloads_generation(self) -> int | None:
        """Changes whenever a download counter may have changed (None: unknown)."""
        self._ensure_started()
        with self.lock:
            return self.downloads if self.healthy else None

    def written(self, token: str) -> None:
        with self.lock:
            if self.thread is None or self.pid != os.getpid():
                return  # no listener in this process (a worker, a script): nothing to hold back
            now = time.monotonic()
            self.pending = {t: since for t, since in self.pending.items() if now - since <= PENDING_FORGET_S}
            self.pending[token] = now

    # --- the listening thread ---------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self.pid == os.getpid() and self.thread is not None:
            return
        with self.lock:
            if self.pid == os.getpid() and self.thread is not None:
                return
            # First use in this process (a forked worker starts its own).
            self.pid = os.getpid()
            self.token, self.healthy = None, False
            self.thread = threading.Thread(target=self._run, name="catalog-state-listener", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        while not self.stopping:
            try:
                self._listen()
            except Exception as exc:  # noqa: BLE001 - any failure: read per request until back
                log.warning("catalog state listener down (%s); reconnecting", exc)
            with self.lock:
                self.healthy = False
            if not self.stopping:
                time.sleep(RECONNECT_S)

    def stop(self) -> None:
        """End this process's listener (tests: the test database can then be dropped)."""
        from django.db import connection

        thread = self.thread
        if thread is None or self.pid != os.getpid():
            return
        self.stopping = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify('catalog_downloads', %s)", [f"stop:{os.getpid()}"])
        if not connection.in_atomic_block:
            thread.join(timeout=10)
        with self.lock:
            self.thread, self.healthy, self.token, self.pid = None, False, None, 0
            self.pending.clear()
        self.stopping = False

    def _listen(self) -> None:
        import psycopg
        from django.db import connection

        params = dict(connection.get_connection_params())
        for key in ("cursor_factory", "context", "prepare_threshold", "pool", "server_side_binding"):
            params.pop(key, None)
        with psycopg.connect(**params, autocommit=True) as conn:
            listen_at = time.monotonic()
            conn.execute("LISTEN catalog_state")
            conn.execute("LISTEN catalog_downloads")
            row = conn.execute("SELECT token FROM catalog_catalogstate WHERE id = 1").fetchone()
            with self.lock:
                self.token = row[0] if row else None
                # Writes made before LISTEN were announced to no one: what they
                # committed is in the token just read.
                self.pending = {t: since for t, since in self.pending.items() if since >= listen_at}
                self.downloads += 1
                self.healthy = self.token is not None
            while not self.stopping:
                for note in conn.notifies(timeout=POLL_S):
                    if self.stopping:
                        return
                    with self.lock:
                        if note.channel == "catalog_state":
                            self.token = note.payload
                            self.pending.pop(note.payload, None)
                            self.healthy = True
                        else:
                            self.downloads += 1
                conn.execute("SELECT 1")  # a dead connection raises here


_listener = _Listener()


def enabled() -> bool:
    from django.conf import settings
    from django.db import connection

    return connection.vendor == "postgresql" and bool(getattr(settings, "CATALOG_STATE_LISTEN", True))


def known_token() -> str | None:
    """The generation token if this process knows it without a query, else None."""
    return _listener.known_token() if enabled() else None


def downloads_generation() -> int | None:
    return _listener.downloads_generation() if enabled() else None


def token_written(token: str) -> None:
    """``catalog_changed`` wrote ``token``: ask the database until it is announced."""
    if enabled():
        _listener.written(token)


def listener_stop() -> None:
    _listener.stop()


def listener_healthy() -> bool:
    return _listener.healthy
