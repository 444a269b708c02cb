"""gunicorn's gthread worker, with a keep-alive connection's next request
read by the thread that answered the previous one.

In gthread a kept-alive connection goes back to the main thread's poller
after every answer; its next request wakes the main thread, which hands the
connection to a pool thread again: two thread wake-ups and a pipe write per
request. ``LingerThreadWorker`` lets the answering thread wait up to
``WEB_LINGER_MS`` (default 5 ms) for the next request on the same connection
first, and answer it itself; a connection that stays quiet goes back to the
poller as before. A thread lingers only while it is the worker's only busy
thread and no work is queued: with two requests or more in flight the worker
is plain gthread (measured with 32 keep-alive clients, lingering there gave
no gain), so it only shortens the round trips of a quiet server.
"""

from __future__ import annotations

import os
import select
import threading
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

LINGER_S = float(os.environ.get("WEB_LINGER_MS", "5")) / 1000


class LingerThreadWorker(ThreadWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._busy_lock = threading.Lock()
        self._busy = 0  # threads inside handle()

    def handle(self, conn: Any) -> Any:
        with self._busy_lock:
            self._busy += 1
        try:
            keep = super().handle(conn)
            while keep is True and LINGER_S > 0 and self._wait_next(conn):
                keep = super().handle(conn)
            return keep
        finally:
            with self._busy_lock:
                self._busy -= 1

    def _wait_next(self, conn: Any) -> bool:
        """Whether the connection's next request arrived within the linger time."""
        if not self.alive or conn.is_http2 or conn.parser is None:
            return False
        if conn.parser.unreader.buf.getvalue():
            return False  # bytes already read ahead: finish_request hands them on
        queue = getattr(self.tpool, "_work_queue", None)
        if queue is None or not queue.empty():
            return False  # work is waiting for a thread: give this one back
        if self._busy > 1:
            return False  # other requests in flight: plain gthread
        try:
            poller = select.poll()
            poller.register(conn.sock, select.POLLIN)
            return bool(poller.poll(LINGER_S * 1000))
        except (OSError, ValueError):
            return False
