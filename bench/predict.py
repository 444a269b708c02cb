"""Predict latency in-process: ``POST /api/v1/models/{slug}/predict`` through
Django's test client (the whole view: visibility, validation, pool, tokenise,
onnxruntime), after ``seed_demo``. The first request (bundle unpack + session
load) is reported apart.

    MODELLIBRARY_VAR_DIR=… .venv/bin/python bench/predict.py [--slug support-ticket-router] [--repeat 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slug", default="support-ticket-router")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "modellibrary.settings")
    os.environ["API_THROTTLE_PREDICT"] = "off"
    os.environ["API_THROTTLE_ANON"] = "off"
    import django

    django.setup()
    from django.test import Client

    client = Client()
    url = f"/api/v1/models/{args.slug}/predict"
    texts = ["My invoice shows a charge twice, please refund me."] * args.batch
    started = time.perf_counter()
    first = client.post(url, {"inputs": texts}, content_type="application/json")
    cold_ms = (time.perf_counter() - started) * 1000
    assert first.status_code == 200, first.content
    variant = first.json()["variant"]
    wall, model = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        response = client.post(url, {"inputs": texts}, content_type="application/json")
        wall.append((time.perf_counter() - started) * 1000)
        model.append(response.json()["latency_ms"])

    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1]

    print(f"{args.slug} ({variant}), batch {args.batch}, {args.repeat} requests; first request {cold_ms:.1f} ms")
    print(f"  request  p50 {statistics.median(wall):.2f} ms  p95 {p(wall, 95):.2f} ms")
    print(
        f"  model    p50 {statistics.median(model):.2f} ms  p95 {p(model, 95):.2f} ms  (latency_ms: graph + tokenise)"
    )


if __name__ == "__main__":
    main()
