"""gunicorn settings for ``make run`` and production alike.

    gunicorn -c modellibrary/gunicorn.conf.py modellibrary.wsgi

Worker processes × threads come from ``WEB_WORKERS`` / ``WEB_THREADS`` (by
default the CPU count, 2 to 8 processes, and 16 threads each: requests spend
much of their time waiting — on the database, on a download's client, on
SQLite's write lock — and a thread that waits holds no CPU; measured on 2
cores, 16 threads served 1.8× the requests of 4, docs/BENCHMARKS.md). Each
process holds its own bounded database pool (``DATABASE_POOL_MAX_SIZE``,
default ``min(WEB_THREADS, 10)``), so the server never opens more than
workers × that many PostgreSQL connections.
"""

from __future__ import annotations

import os

_cpus = os.cpu_count() or 1

bind = os.environ.get("WEB_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_WORKERS", max(2, min(_cpus, 8))))
threads = int(os.environ.get("WEB_THREADS", 16))
# gthread, with a keep-alive connection's next request read by the thread
# that answered the previous one while the worker is otherwise idle
# (modellibrary/web_worker.py; WEB_LINGER_MS=0 gives plain gthread).
worker_class = "modellibrary.web_worker.LingerThreadWorker"
# Keep-alive connections are cheap with gthread; clients that reuse them skip
# a TCP handshake per request.
keepalive = int(os.environ.get("WEB_KEEPALIVE_S", 5))
# Downloads stream with sendfile; a slow client must not hold a thread forever.
timeout = int(os.environ.get("WEB_TIMEOUT_S", 60))
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT_S", 20))
# Recycle a worker now and then (jittered, so not all at once): bounds any
# slow growth of a process's memory.
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", 20000))
max_requests_jitter = max_requests // 10
# Import the app once in the master; workers share its pages (copy-on-write).
preload_app = True
accesslog = os.environ.get("WEB_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("WEB_LOG_LEVEL", "info")
proc_name = "modellibrary-web"


def pre_fork(server: object, worker: object) -> None:
    # Workers must not inherit the master's database connection or pool (none
    # is opened at import, but be sure): each worker opens its own.
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        conn.close()
        close_pool = getattr(conn, "close_pool", None)
        if close_pool is not None:
            close_pool()


def post_worker_init(worker: object) -> None:
    # Warm the worker before it takes requests: the facet index and the
    # hybrid search's query encoder load here, not on a client's first search.
    import logging
    import threading

    from django.contrib.auth.models import AnonymousUser
    from django.db import connections

    from catalog.selectors.search import SearchParams, model_search
    from catalog.storage import artifact_tmp_sweep

    def sweep() -> None:
        try:
            # What a killed worker left (a partial upload): its lock is free now.
            artifact_tmp_sweep()
        except OSError:
            logging.getLogger(__name__).exception("could not sweep ARTIFACT_TMP_DIR")

    # A little later: the sweep spares entries touched in the last 2 s.
    timer = threading.Timer(5.0, sweep)
    timer.daemon = True
    timer.start()
    try:
        model_search(user=AnonymousUser(), params=SearchParams(q="warm up"))
    except Exception:  # a cold worker still serves
        logging.getLogger(__name__).exception("warm-up search failed")
    finally:
        for conn in connections.all(initialized_only=True):
            conn.close()
