"""Where a read request's time goes: the shapes of ``bench/mlflow_compare.py``
answered in-process (Django's test client, the whole middleware stack, no
network), timed and, with ``--profile``, profiled with cProfile.

    .venv/bin/python bench/api_profile.py [--count 10000] [--repeat 50] [--profile SHAPE]

Uses ``BENCH_MLFLOW_DATABASE_URL`` (the database ``mlflow_compare.py`` fills;
filled here up to ``--count`` when short). The whole-response page cache is
off, as in the comparison.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--profile", default="", help="a shape name (or 'all') to profile")
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args()

    from bench.search import ensure_database

    url = os.environ.get("BENCH_MLFLOW_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/modellibrary_mlflow_cmp")
    ensure_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "modellibrary.settings"
    os.environ.setdefault("DJANGO_DEBUG", "0")
    os.environ["PAGE_CACHE_SECONDS"] = "0"
    os.environ["API_THROTTLE_ANON"] = "off"
    os.environ["API_THROTTLE_USER"] = "off"
    os.environ.setdefault("MODELLIBRARY_LOCAL_HTTP", "1")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + "x" * 40)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from catalog.models import RegisteredModel
    from catalog.signals import catalog_changed

    call_command("migrate", verbosity=0)
    have = RegisteredModel.objects.count()
    if have < args.count:
        from catalog.services.synth import catalog_synth

        catalog_synth(count=args.count - have, seed=7)
        RegisteredModel.objects.update(visibility="internal")
        catalog_changed()
    slugs = list(RegisteredModel.objects.order_by("id").values_list("slug", flat=True)[: args.count])
    from bench.mlflow_compare import WORDS, cold_words

    words = WORDS
    texts = RegisteredModel.objects.order_by("id").values_list("name", "summary", "search_document")[: args.count]
    # A word used by no other request of this run (cf. mlflow_compare's cold row).
    fresh = cold_words([t for row in texts for t in row], args.repeat)

    def shapes(i: int) -> dict[str, tuple[str, dict[str, Any]]]:
        word = words[i % len(words)]
        return {
            "text": ("/api/v1/models/", {"q": word, "page_size": 100}),
            "cold text": ("/api/v1/models/", {"q": fresh[max(i - 16, 0)], "page_size": 100}),
            "tree": ("/api/v1/models/", {"domain": "business", "page_size": 100}),
            "two+text": ("/api/v1/models/", {"q": word, "domain": "business", "modality": "text", "page_size": 100}),
            "list": ("/api/v1/models/", {"page_size": 100}),
            "get": (f"/api/v1/models/{slugs[(i * 7919) % len(slugs)]}/", {}),
        }

    client = Client(HTTP_ACCEPT="application/json")
    for i in range(16):  # warm: index, encoder, query vectors (not the cold row's words)
        for shape, (path, params) in shapes(i).items():
            if shape != "cold text":
                assert client.get(path, params).status_code == 200
    for shape in shapes(0):
        times = []
        profiler = cProfile.Profile() if args.profile in (shape, "all") else None
        for i in range(args.repeat):
            path, params = shapes(i + 16)[shape]
            t0 = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            response = client.get(path, params)
            if profiler is not None:
                profiler.disable()
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, response.content[:300]
        print(f"{shape:10s} p50 {statistics.median(times):6.2f} ms  min {min(times):6.2f}  max {max(times):6.2f}")
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.top)
            print(out.getvalue())
    cold_parts(fresh[: args.repeat])
    print(f"load average: {os.getloadavg()[0]:.2f}")


def cold_parts(used: list[str]) -> None:
    """What a word not seen before costs, part by part, on words no request
    has used (prefixes of the cold row's words, with 'x' appended: new to the
    keyword memo and the query-vector cache alike)."""
    import numpy as np

    from catalog.selectors.facet_index import facet_index
    from catalog.selectors.search import _semantic, _text_matches
    from discovery.selectors import _cached_query_vector, query_vector

    index = facet_index()
    everything = np.ones(len(index.ids), dtype=bool)
    parts: dict[str, list[float]] = {"keyword query (PostgreSQL)": [], "query encoding": [], "semantic scan": []}
    for word in used:
        q = word + "s"
        t0 = time.perf_counter()
        _text_matches(q, index.ids, index)
        t1 = time.perf_counter()
        assert index.vectors is not None
        vector = query_vector(index.vectors, q)
        t2 = time.perf_counter()
        if vector is not None:
            _semantic(index, vector, everything)
        t3 = time.perf_counter()
        parts["keyword query (PostgreSQL)"].append((t1 - t0) * 1000)
        parts["query encoding"].append((t2 - t1) * 1000)
        parts["semantic scan"].append((t3 - t2) * 1000)
    print(f"cold parts over {len(used)} new words (query-vector cache {_cached_query_vector.cache_info().currsize}):")
    for name, values in parts.items():
        print(f"  {name:28s} p50 {statistics.median(values):6.2f} ms  max {max(values):6.2f}")


if __name__ == "__main__":
    main()
