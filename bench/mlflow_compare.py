"""Side by side with MLflow 3.17.2's model registry: the same 10,000 models,
the same query shapes, one keep-alive client, requests interleaved in chunks.

    .venv/bin/python bench/mlflow_compare.py [--count 10000] [--rounds 10] [--chunk 20]

* MLflow: installed in its own virtualenv (``var/bench/mlflow-venv``, not in
  the requirements), ``mlflow server`` on SQLite (``var/bench/mlflow.db``),
  filled through its registry store by its own interpreter.
* Ours: PostgreSQL (``BENCH_MLFLOW_DATABASE_URL``, default a
  ``modellibrary_mlflow_cmp`` database, created if missing), gunicorn with the
  production settings (``modellibrary/gunicorn.conf.py``) and 4 workers, the
  whole-response page cache off. Entries come from ``catalog_synth`` (all
  made internal, so the anonymous client sees all 10,000 on both sides); each
  is registered in MLflow with the same name, its summary as description and
  its tree paths and team as tags.

Shapes, both sides returning pages of 100 (name contains ↔ ``q``; a tree
filter ↔ a ``LIKE 'path%'`` tag filter): name/text contains, one tree/tag
filter, two filters + text, list page of 100, get one model.

The text shapes cycle through 8 fixed words, and ours keeps a word's keyword
matches and semantic neighbours per catalogue generation (and its query
vector per process): after the warm-up they are memo hits. The row "name/text
contains, words not seen before" sends each request a word used nowhere else
in the run (not in the warm-up, not by another row), the same word on both
sides, drawn from the catalogue's own vocabulary (the entries' names,
summaries and search documents; when those run out, prefixes of them, which
both sides match as substrings / prefix terms): every request pays the
keyword query, the query encoding and the semantic scan.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VENV = ROOT / "var" / "bench" / "mlflow-venv"
MLFLOW_DB = ROOT / "var" / "bench" / "mlflow.db"
WORDS = ["sentiment", "fraud", "ticket", "defect", "churn", "spam", "topic", "crop"]
COLD = "name/text contains, words not seen before"


def cold_words(texts: Sequence[str], need: int, seed: int = 11) -> list[str]:
    """``need`` distinct queries from the catalogue's own words (≥ 4 letters,
    not one of WORDS nor a prefix of one), shuffled; prefixes (≥ 4 letters) of
    those words are added only when the whole words run out."""
    import random

    vocabulary = sorted({w for text in texts for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 4})
    fresh = [w for w in vocabulary if not any(known.startswith(w) or w.startswith(known) for known in WORDS)]
    rng = random.Random(seed)
    rng.shuffle(fresh)
    words = list(fresh)
    if len(words) < need:
        taken = set(words)
        prefixes = sorted({w[:n] for w in fresh for n in range(4, len(w))} - taken)
        prefixes = [w for w in prefixes if not any(known.startswith(w) for known in WORDS)]
        rng.shuffle(prefixes)
        words += prefixes[: need - len(words)]
    print(f"cold text row: {min(len(fresh), need)} whole words of the catalogue, {max(need - len(fresh), 0)} prefixes")
    if len(words) < need:
        raise RuntimeError(f"only {len(words)} fresh words in the catalogue's vocabulary, {need} needed")
    return words[:need]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ensure_mlflow() -> Path:
    mlflow = VENV / "bin" / "mlflow"
    if not mlflow.exists():
        # The interpreter this virtualenv was made from, not the project's venv.
        base = getattr(sys, "_base_executable", "") or "python3"
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "mlflow==3.17.2"], check=True)
    return mlflow


# Run by MLflow's own interpreter: registers the models through MLflow's
# registry store (what the server's ``registered-models/create`` handler
# calls), without an HTTP round trip per model (1,419 s over HTTP).
FILL_SCRIPT = """
import json, sys
from mlflow.entities.model_registry import RegisteredModelTag
from mlflow.exceptions import MlflowException
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

store = SqlAlchemyStore(sys.argv[1])
for line in sys.stdin:
    entry = json.loads(line)
    tags = [RegisteredModelTag(k, v) for k, v in entry["tags"].items()]
    try:
        store.create_registered_model(entry["name"], tags=tags, description=entry["description"])
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
"""


def mlflow_fill(entries: Sequence[tuple[str, ...]]) -> None:
    import json

    lines = "".join(
        json.dumps(
            {
                "name": name,
                "description": summary,
                "tags": {"slug": slug, "modality": modality, "domain": domain, "result": result, "team": team},
            }
        )
        + "\n"
        for slug, name, summary, modality, domain, result, team in entries
    )
    subprocess.run(
        [str(VENV / "bin" / "python"), "-c", FILL_SCRIPT, f"sqlite:///{MLFLOW_DB}"],
        input=lines.encode(),
        check=True,
        cwd=ROOT / "var" / "bench",
    )


def wait_for(session: Any, url: str) -> None:
    import requests

    for _ in range(600):
        try:
            if session.get(url, timeout=120).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def mlflow_filled(count: int) -> bool:
    import sqlite3

    if not MLFLOW_DB.exists():
        return False
    try:
        with sqlite3.connect(MLFLOW_DB) as db:
            (have,) = db.execute("SELECT count(*) FROM registered_models").fetchone()
    except sqlite3.Error:
        return False
    return bool(have >= count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10, help="chunks per shape and side")
    parser.add_argument("--chunk", type=int, default=20)
    parser.add_argument("--settle", type=float, default=15.0, help="seconds between the warm-up and the timed rounds")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--mlflow-port", type=int, default=8767)
    parser.add_argument(
        "--page-cache-seconds", type=int, default=0, help="ours: the whole-response cache (0: off, what counts)"
    )
    args = parser.parse_args()

    from bench.search import ensure_database

    url = os.environ.get("BENCH_MLFLOW_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/modellibrary_mlflow_cmp")
    ensure_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "modellibrary.settings"
    import django

    django.setup()
    import requests
    from django.core.management import call_command

    from catalog.models import RegisteredModel
    from catalog.signals import catalog_changed

    call_command("migrate", verbosity=0)
    have = RegisteredModel.objects.count()
    if have < args.count:
        from catalog.services.synth import catalog_synth

        catalog_synth(count=args.count - have, seed=7)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    RegisteredModel.objects.update(visibility="internal")
    catalog_changed()
    entries = list(
        RegisteredModel.objects.order_by("id").values_list(
            "slug", "name", "summary", "modality__path", "domain__path", "result_kind__path", "team__slug"
        )[: args.count]
    )

    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-" + "x" * 40,
        "MODELLIBRARY_LOCAL_HTTP": "1",
        "API_THROTTLE_ANON": "off",
        "API_THROTTLE_USER": "off",
        # Measure the search, not the whole-response cache (catalog/page_cache.py).
        "PAGE_CACHE_SECONDS": str(args.page_cache_seconds),
    }
    mlflow = ensure_mlflow()
    MLFLOW_DB.parent.mkdir(parents=True, exist_ok=True)
    if not mlflow_filled(len(entries)):
        t0 = time.perf_counter()
        mlflow_fill(entries)
        print(f"MLflow filled with {len(entries):,} models in {time.perf_counter() - t0:.0f} s")
    # The production server settings (modellibrary/gunicorn.conf.py: gthread
    # workers, keep-alive), with 4 worker processes.
    ours_server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", str(ROOT / "modellibrary" / "gunicorn.conf.py")]
        + ["modellibrary.wsgi", "-b", f"127.0.0.1:{args.port}", "-w", "4", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )
    mlflow_server = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{MLFLOW_DB}", "--host", "127.0.0.1"]
        + ["--port", str(args.mlflow_port)],
        cwd=ROOT / "var" / "bench",
        # The registry only: MLflow's background job runner (huey consumers on
        # the same SQLite file) stalled writes for minutes on this machine.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ours_base = f"http://127.0.0.1:{args.port}/api/v1/models/"
    ml_base = f"http://127.0.0.1:{args.mlflow_port}/api/2.0/mlflow/registered-models/"
    try:
        ours, ml = requests.Session(), requests.Session()
        wait_for(ours, ours_base)
        wait_for(ml, ml_base + "search?max_results=1")
        if ml.get(ml_base + "get", params={"name": entries[-1][1]}).status_code != 200:
            raise RuntimeError("MLflow's registry lacks the entries (fill failed?)")
        names = [e[1] for e in entries]
        slugs = [e[0] for e in entries]
        documents = RegisteredModel.objects.order_by("id").values_list("search_document", flat=True)[: args.count]
        fresh = cold_words(names + [e[2] for e in entries] + list(documents), args.rounds * args.chunk)

        def shapes(
            i: int, cold: bool = True
        ) -> dict[str, tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]]:
            word = WORDS[i % len(WORDS)]
            j = (i * 7919) % len(entries)
            first = {
                "name/text contains": (
                    (ours_base, {"q": word, "page_size": 100}),
                    (ml_base + "search", {"filter": f"name LIKE '%{word}%'", "max_results": 100}),
                ),
            }
            if cold:
                # Never in the warm-up: the i-th timed request of this row, on either side.
                new = fresh[i]
                first[COLD] = (
                    (ours_base, {"q": new, "page_size": 100}),
                    (ml_base + "search", {"filter": f"name LIKE '%{new}%'", "max_results": 100}),
                )
            return {
                **first,
                "one tree/tag filter": (
                    (ours_base, {"domain": "business", "page_size": 100}),
                    (ml_base + "search", {"filter": "tags.domain LIKE 'business%'", "max_results": 100}),
                ),
                "two filters + text": (
                    (ours_base, {"q": word, "domain": "business", "modality": "text", "page_size": 100}),
                    (
                        ml_base + "search",
                        {
                            "filter": f"name LIKE '%{word}%' AND tags.domain LIKE 'business%' "
                            "AND tags.modality LIKE 'text%'",
                            "max_results": 100,
                        },
                    ),
                ),
                "list page of 100": (
                    (ours_base, {"page_size": 100}),
                    (ml_base + "search", {"max_results": 100}),
                ),
                "get one model": (
                    (f"{ours_base}{slugs[j]}/", {}),
                    (ml_base + "get", {"name": names[j]}),
                ),
            }

        # Warm both. Every gunicorn worker builds its in-memory index, and its
        # per-generation answers, once; a keep-alive connection stays with one
        # worker, but the server closes it after 5 idle seconds and the next
        # one may land on any worker: warm them all through several
        # connections at once.
        warmers = [requests.Session() for _ in range(3 * 4)]
        for i in range(16):
            for (o_url, o_params), _ in shapes(i, cold=False).values():
                for warmer in warmers:
                    warmer.get(o_url, params=o_params).raise_for_status()
        for warmer in warmers:
            warmer.close()
        for i in range(40):
            for (o_url, o_params), (m_url, m_params) in shapes(i, cold=False).values():
                ours.get(o_url, params=o_params).raise_for_status()
                ml.get(m_url, params=m_params).raise_for_status()
        # Each worker's first API answer of a generation starts building every
        # model's detail document in the background (catalog/selectors/documents.py):
        # a one-off per generation that competes with the requests for the GIL
        # and the cores. Measure the steady state after it.
        time.sleep(args.settle)
        for i in range(16):  # the connections the settle closed
            for (o_url, o_params), (m_url, m_params) in shapes(i, cold=False).values():
                ours.get(o_url, params=o_params).raise_for_status()
                ml.get(m_url, params=m_params).raise_for_status()
        times: dict[tuple[str, str], list[float]] = {}
        counts: dict[tuple[str, str], int] = {}
        server_ms: dict[str, list[float]] = {}  # ours, from the Server-Timing header
        load_before = os.getloadavg()
        for r in range(args.rounds):
            for shape in shapes(0):
                for side, session in (("ours", ours), ("mlflow", ml)):
                    for k in range(args.chunk):
                        url_, params = shapes(r * args.chunk + k)[shape][0 if side == "ours" else 1]
                        t0 = time.perf_counter()
                        response = session.get(url_, params=params, timeout=30)
                        elapsed = (time.perf_counter() - t0) * 1000
                        response.raise_for_status()
                        times.setdefault((shape, side), []).append(elapsed)
                        timing = response.headers.get("Server-Timing", "")
                        if side == "ours" and "dur=" in timing:
                            server_ms.setdefault(shape, []).append(float(timing.split("dur=")[1].split(";")[0]))
                        body = response.json()
                        counts[(shape, side)] = len(body.get("results", body.get("registered_models", [1])))
    finally:
        for server in (ours_server, mlflow_server):
            server.terminate()
        for server in (ours_server, mlflow_server):
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()

    print(
        f"\n{len(entries):,} models each; client-observed ms, {args.rounds} x {args.chunk} requests per shape and side"
    )
    print(f"{'shape':22s} {'ours p50':>9s} {'ours p95':>9s} {'MLflow p50':>11s} {'MLflow p95':>11s} {'p50 ratio':>10s}")
    for shape in shapes(0):
        o, m = times[(shape, "ours")], times[(shape, "mlflow")]
        print(
            f"{shape:22s} {statistics.median(o):9.1f} {percentile(o, 0.95):9.1f} {statistics.median(m):11.1f} "
            f"{percentile(m, 0.95):11.1f} {statistics.median(m) / statistics.median(o):9.1f}x"
            f"   (rows: ours {counts[(shape, 'ours')]}, MLflow {counts[(shape, 'mlflow')]})"
        )
    print(
        "ours server-side p50 (Server-Timing):",
        ", ".join(f"{shape} {statistics.median(v):.1f} ms" for shape, v in server_ms.items()),
    )
    print(f"load average before / after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f}")
    print("target: MLflow p50 / ours p50 >= 10 on every shape")


if __name__ == "__main__":
    main()
