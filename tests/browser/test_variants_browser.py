from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_version_page_shows_variants_with_latency_bars_and_a_pull_command(
    page: Any, live_server: Any, make_model: Any
) -> None:
    from catalog.models import Variant

    model = make_model(
        "Router",
        variants=[
            {"precision": "fp32", "p95": 12.0},
            {"precision": "int8", "p95": 4.0},
            {"name": "onnx-int8-bad", "precision": "int8", "p95": 3.0, "status": "rejected"},
        ],
    )
    for v in Variant.objects.filter(version=model.latest_version):
        v.latency = {
            "1": {"p50_ms": v.latency_p95_ms / 1.2, "p95_ms": v.latency_p95_ms},
            "32": {"p50_ms": v.latency_p95_ms * 6, "p95_ms": v.latency_p95_ms * 7},
        }
        v.parity = {"top1_agreement": 0.995, "max_abs_diff": 0.01}
        v.save()
    page.goto(live_server.url + "/models/router/")
    table = page.locator("#variants table")
    assert table.locator("tr[data-variant]").count() == 3
    assert "Rejected by parity" in table.locator('tr[data-variant="onnx-int8-bad"]').inner_text()
    assert table.locator('tr[data-variant="onnx-int8-bad"] a.button').count() == 0
    assert table.locator('tr[data-variant="onnx-int8"] a.button').count() == 1
    bars = page.locator("svg.latency rect")
    assert bars.count() == 6  # batch 1 and batch 32 for each variant
    widths = {r.get_attribute("class"): float(r.get_attribute("width")) for r in bars.all()[:2]}
    assert widths["b32 served"] > widths["b1 served"]
    assert "python -m pullcli router --version 1" in page.locator("pre.pull").inner_text()
