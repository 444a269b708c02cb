"""Search latency at scale: the ``model_search`` selector in-process and
``GET /api/v1/models/`` over HTTP (gunicorn on loopback, production settings), for a fixed query mix.

    .venv/bin/python bench/search.py [--count 100000] [--repeat 60]

Uses ``BENCH_DATABASE_URL`` (default: a ``modellibrary_bench`` database on the
local PostgreSQL server, created if missing) and fills it with
``catalog_synth`` up to ``--count`` entries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIX: list[tuple[str, dict[str, Any]]] = [
    ("free text", {"q": "sentiment"}),
    ("free text, 2 words", {"q": "fraud detection"}),
    ("subtree facet", {"modality": "image"}),
    ("metric filter", {"min_precision": 0.95}),
    ("variant filter", {"precision": "int8", "max_p95_ms": 10}),
    ("combined", {"q": "bert", "modality": "text", "result": "classification", "min_precision": 0.8}),
    ("no filter", {}),
]
# Plain-language questions: keyword side (every term) plus the semantic side
# (query encoded by the int8 MiniLM, cosine over the in-memory matrix), fused.
HYBRID: list[tuple[str, dict[str, Any]]] = [
    ("hybrid tumor", {"q": "tumor"}),
    ("hybrid complaints", {"q": "customer complaints"}),
    ("hybrid refund", {"q": "refund"}),
    ("hybrid emails", {"q": "classify emails by department"}),
    ("hybrid fraud", {"q": "detect fraudulent card payments"}),
]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/modellibrary_bench")
    ensure_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "modellibrary.settings"
    import django

    django.setup()
    from django.contrib.auth.models import AnonymousUser
    from django.core.management import call_command
    from django.db import connection

    from catalog.models import RegisteredModel
    from catalog.selectors.search import SearchParams, model_search

    call_command("migrate", verbosity=0)
    have = RegisteredModel.objects.count()
    if have < args.count:
        from catalog.services.synth import catalog_synth

        t0 = time.perf_counter()
        catalog_synth(count=args.count - have, echo=lambda s: print(f"  synth {s}", flush=True))
        print(f"filled {args.count - have} entries in {time.perf_counter() - t0:.0f} s")
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    # As the web process does at start-up (modellibrary/wsgi.py).
    from modellibrary.startup import freeze_startup_objects

    freeze_startup_objects()
    total = RegisteredModel.objects.count()
    print(f"\ncatalogue: {total:,} registered models on PostgreSQL {connection.pg_version}\n")  # type: ignore[attr-defined]

    page = 20
    selector: dict[str, list[float]] = {}
    for label, params in MIX + HYBRID:
        times = []
        for i in range(args.repeat + 5):
            t0 = time.perf_counter()
            result = model_search(user=AnonymousUser(), params=SearchParams(**params))
            rows = result.page(1, page)
            elapsed = (time.perf_counter() - t0) * 1000
            if i >= 5:
                times.append(elapsed)
        selector[label] = times
        print(
            f"selector  {label:20s} hits={result.total:>7,}  p50={percentile(times, 0.5):6.1f} ms  "
            f"p95={percentile(times, 0.95):6.1f} ms  (rows {len(rows)})"
        )
    hybrid_labels = {label for label, _ in HYBRID}
    all_selector = [t for label, ts in selector.items() if label not in hybrid_labels for t in ts]

    import requests

    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-" + "x" * 40,
        # Plain HTTP on loopback, and no request-rate limit on the measured client.
        "MODELLIBRARY_LOCAL_HTTP": "1",
        "API_THROTTLE_ANON": "off",
        "API_THROTTLE_USER": "off",
        # Measure the search, not the whole-response cache (catalog/page_cache.py).
        "PAGE_CACHE_SECONDS": "0",
    }
    # The production server settings (modellibrary/gunicorn.conf.py: gthread
    # workers, keep-alive, warm-up), with 2 worker processes.
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(ROOT / "modellibrary" / "gunicorn.conf.py"),
            "modellibrary.wsgi",
            "-b",
            f"127.0.0.1:{args.port}",
            "-w",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    http: dict[str, list[float]] = {}
    try:
        session = requests.Session()
        base = f"http://127.0.0.1:{args.port}/api/v1/models/"
        for _ in range(100):
            try:
                session.get(base, timeout=60)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        # Every worker builds its facet index on its first request: warm them all.
        for _ in range(20):
            session.get(base, timeout=60)
        server_times: dict[str, list[float]] = {}
        for label, params in MIX + HYBRID:
            times = []
            for i in range(args.repeat + 5):
                t0 = time.perf_counter()
                response = session.get(base, params=params, timeout=10)
                elapsed = (time.perf_counter() - t0) * 1000
                response.raise_for_status()
                if i >= 5:
                    times.append(elapsed)
                    server_times.setdefault(label, []).append(float(response.headers["Server-Timing"].split("dur=")[1]))
            http[label] = times
            st = server_times[label]
            print(
                f"HTTP      {label:20s} client p50={percentile(times, 0.5):6.1f} p95={percentile(times, 0.95):6.1f} ms"
                f"  server p50={percentile(st, 0.5):6.1f} p95={percentile(st, 0.95):6.1f} ms"
                f"  ({len(response.content):,} bytes)"
            )
    finally:
        server.terminate()
        server.wait(10)
    all_http = [t for label, ts in http.items() if label not in hybrid_labels for t in ts]
    all_server = [t for label, ts in server_times.items() if label not in hybrid_labels for t in ts]
    hybrid_selector = [t for label in hybrid_labels for t in selector[label]]
    hybrid_server = [t for label in hybrid_labels for t in server_times[label]]
    print(
        f"\nmix, selector:             p50={statistics.median(all_selector):.1f} ms  p95={percentile(all_selector, 0.95):.1f} ms"
    )
    print(
        f"mix, HTTP client-observed: p50={statistics.median(all_http):.1f} ms  p95={percentile(all_http, 0.95):.1f} ms"
    )
    print(
        f"mix, HTTP server-side:     p50={statistics.median(all_server):.1f} ms  p95={percentile(all_server, 0.95):.1f} ms"
    )
    print("target: server-side p95 <= 25 ms at 100k entries")
    print(
        f"\nhybrid questions, selector:   p50={statistics.median(hybrid_selector):.1f} ms  "
        f"p95={percentile(hybrid_selector, 0.95):.1f} ms"
    )
    print(
        f"hybrid questions, HTTP server: p50={statistics.median(hybrid_server):.1f} ms  "
        f"p95={percentile(hybrid_server, 0.95):.1f} ms"
    )
    print("target: hybrid server-side p95 <= 30 ms at 100k entries")


if __name__ == "__main__":
    main()
