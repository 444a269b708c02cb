from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def catalogue(make_model: Any) -> None:
    make_model(
        "Bird photo classifier",
        modality="image/photo/rgb",
        result="classification/multiclass",
        domain="science/biology/ebird",
        summary="Names the bird species in a photo",
    )
    make_model(
        "Chest x-ray triage",
        modality="image/medical/x-ray",
        result="classification/binary",
        domain="science/medicine/radiology",
        summary="Flags abnormal chest radiographs",
    )
    make_model(
        "Ticket router",
        modality="text/natural-language/english",
        result="classification/multiclass",
        domain="business/support-tickets",
        summary="Routes support tickets to a queue",
    )


def hits(page: Any) -> list[str]:
    return page.locator("article.hit h2 a").all_inner_texts()


def test_typing_narrows_results_and_keeps_the_url(page: Any, live_server: Any, catalogue: None) -> None:
    page.goto(live_server.url + "/")
    assert len(hits(page)) == 3
    page.fill("#q", "ticket")
    page.wait_for_function("document.querySelectorAll('article.hit').length === 1")
    assert hits(page) == ["Ticket router"]
    page.wait_for_url("**/?*q=ticket*")
    # The URL can be bookmarked: opening it again shows the same result.
    page.goto(page.url)
    assert hits(page) == ["Ticket router"]
    assert page.input_value("#q") == "ticket"


def test_a_facet_click_narrows_by_subtree(page: Any, live_server: Any, catalogue: None) -> None:
    page.goto(live_server.url + "/")
    facet = page.locator('[data-facet="modality"] a[data-path="image"]')
    assert facet.locator("xpath=following-sibling::span[1]").inner_text() == "2"
    facet.click()
    page.wait_for_function("document.querySelectorAll('article.hit').length === 2")
    assert sorted(hits(page)) == ["Bird photo classifier", "Chest x-ray triage"]
    page.wait_for_url("**modality=image*")
    # Children of the selected node now show, with their counts.
    page.locator('[data-facet="modality"] a[data-path="image/medical"]').click()
    page.wait_for_function("document.querySelectorAll('article.hit').length === 1")
    assert hits(page) == ["Chest x-ray triage"]
    # The search box keeps the facet: typing searches inside it.
    page.fill("#q", "bird")
    page.wait_for_selector("p.empty")
    assert hits(page) == []


def test_model_page_shows_the_three_aspects(page: Any, live_server: Any, catalogue: None) -> None:
    page.goto(live_server.url + "/")
    page.click("text=Bird photo classifier")
    page.wait_for_url("**/models/bird-photo-classifier/")
    assert "Image › Photo › RGB" in page.locator("#intake").inner_text()
    assert "Classification › Multiclass" in page.locator("#result").inner_text()
    assert "mlp-classifier" in page.locator("#artifact").inner_text()
    assert page.locator("#lineage svg").count() == 1
