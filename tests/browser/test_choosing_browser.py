"""Choosing a model in the browser: tick and compare; type a sentence and see the prediction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.evaluations.conftest import make_text_classifier, tiny_classifier_build  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_tick_two_models_and_compare_them(page: Any, live_server: Any, make_model: Callable[..., Any]) -> None:
    make_model("Bird photo classifier", modality="image/photo/rgb", precision=0.81, labels=["crow", "robin"])
    make_model("Ticket router", precision=0.93, labels=["billing", "shipping"])
    make_model("Spare model", precision=0.5)
    page.goto(live_server.url + "/")
    page.check('input[type=checkbox][value="bird-photo-classifier"]')
    page.check('input[type=checkbox][value="ticket-router"]')
    page.click("#compare-button")
    page.wait_for_url("**/compare/?*")
    heads = page.locator("#compare-table thead th[data-slug]").all_inner_texts()
    assert sorted(heads) == ["Bird photo classifier", "Ticket router"]
    # The shared metric is one row, aligned under each model; the better value is highlighted.
    row = page.locator('tr[data-metric="macro_precision"][data-dataset="unit holdout"]')
    cells = dict(zip(heads, row.locator("td").all_inner_texts(), strict=True))
    assert cells == {"Bird photo classifier": "0.810", "Ticket router": "0.930"}
    assert row.locator("td.best").inner_text() == "0.930"
    # Rows that differ are marked; the same family is not.
    assert "differs" in (page.locator('tr[data-row="Labels"]').get_attribute("class") or "")
    assert "differs" not in (page.locator('tr[data-row="Family"]').get_attribute("class") or "")
    assert "differs" in (page.locator('tr[data-row="Modality"]').get_attribute("class") or "")


def test_more_than_four_models_get_a_clear_message(page: Any, live_server: Any, make_model: Callable[..., Any]) -> None:
    slugs = [make_model(f"Model {i}").slug for i in range(5)]
    response = page.goto(live_server.url + "/compare/?models=" + ",".join(slugs))
    assert response.status == 400
    assert "at most 4 models" in page.locator("#compare-message").inner_text()
    assert page.locator("#compare-table").count() == 0


def test_type_a_sentence_and_see_the_prediction(
    page: Any,
    live_server: Any,
    make_text_classifier: Callable[..., Any],  # noqa: F811
) -> None:
    model = make_text_classifier("Ticket router")
    labels = model.latest_version.labels
    page.goto(f"{live_server.url}/models/{model.slug}/")
    page.fill("#try-it-text", "I was charged twice, please refund my invoice")
    page.click("#try-it-submit")
    page.wait_for_selector("#try-it-top")
    top = page.locator("#try-it-top strong").inner_text()
    assert top in labels
    meters = page.locator("#try-it-result meter")
    assert meters.count() == len(labels)
    values = [float(v) for v in meters.evaluate_all("ms => ms.map(m => m.value)")]
    assert values == sorted(values, reverse=True)  # best first
    assert sum(values) == pytest.approx(1.0, abs=1e-3)
    assert page.locator("#try-it-result tr").first.get_attribute("data-label") == top
    assert "onnx-fp32" in page.locator("#try-it-top").inner_text()
