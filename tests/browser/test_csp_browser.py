"""The main pages under the Content-Security-Policy, in Chromium: no
violation on any of them, and htmx still works (live search, job polling)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Registered before any page script runs: every violation the browser reports.
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " " + (e.sourceFile || "") + ":" + e.lineNumber);
});
"""


@pytest.fixture
def watched(browser: Any) -> Iterator[tuple[Any, list[str]]]:
    """A page under the site's real CSP (the shared ``page`` fixture bypasses it)."""
    console: list[str] = []
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.add_init_script(WATCH)
    page.on("console", lambda m: console.append(m.text) if "Content Security Policy" in m.text else None)
    yield page, console
    context.close()


def violations(page: Any, console: list[str]) -> list[str]:
    return [*page.evaluate("window.__csp || []"), *console]


@pytest.fixture
def job(make_model: Callable[..., Any], make_team: Callable[..., Any], make_user: Callable[..., Any]) -> Any:
    from catalog.models import Dataset, DatasetVersion, FineTuneJob, JobStatus

    team = make_team("Team A")
    make_user("alice", team)
    base = make_model("Ticket router", team=team, summary="Routes support tickets to a queue")
    make_model("Bird photo classifier", modality="image/photo/rgb", domain="science/biology/ebird", team=team)
    dataset = Dataset.objects.create(team=team, name="tickets")
    version = DatasetVersion.objects.create(
        dataset=dataset,
        sha256="0" * 64,
        size=10,
        file_name="tickets.csv",
        rows=120,
        text_column="text",
        label_column="label",
        label_counts={"billing": 60, "bug": 60},
    )
    return FineTuneJob.objects.create(
        team=team,
        base_version=base.versions.order_by("-version").first(),
        dataset_version=version,
        target_name="Ticket router v2",
        status=JobStatus.RUNNING,
        phase="training",
        progress=0.4,
        log="epoch 1 loss 0.9\n",
    )


def test_main_pages_have_no_csp_violation_and_htmx_works(
    watched: tuple[Any, list[str]], live_server: Any, job: Any
) -> None:
    page, console = watched
    base = live_server.url

    # Login page, then log in through it.
    page.goto(base + "/accounts/login/?next=/")
    assert page.locator("link[rel=icon]").count() == 1
    page.fill("#id_username", "alice")
    page.fill("#id_password", "pw-correct-horse")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")

    # Catalogue: the live search (htmx) narrows the results.
    expect(page.locator("article.hit")).to_have_count(2)
    page.fill("#q", "ticket")
    expect(page.locator("article.hit")).to_have_count(1)
    assert "Ticket router" in page.locator("article.hit h2 a").inner_text()

    # Model page.
    page.goto(base + "/models/ticket-router/")
    page.wait_for_load_state("networkidle")

    # Job page: htmx polls the live part every second and swaps it in.
    page.goto(base + f"/jobs/{job.pk}/")
    assert float(page.locator("progress.bar").get_attribute("value")) == 40
    with page.expect_response(lambda r: f"/jobs/{job.pk}/" in r.url and r.request.headers.get("hx-request") == "true"):
        pass
    # No inline style from htmx: its indicator rules come from app.css.
    assert page.evaluate("document.querySelectorAll('style').length") == 0

    # The branded 404.
    page.goto(base + "/no/such/page/")
    assert "Page not found" in page.inner_text("main")

    assert violations(page, console) == []


def test_a_violation_would_be_seen(watched: tuple[Any, list[str]], live_server: Any, db: None) -> None:
    """The watch itself works: an inline script injected into the page is refused and reported."""
    page, console = watched
    page.goto(live_server.url + "/accounts/login/")
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1'; document.body.appendChild(s); }"
    )
    for _ in range(50):
        if page.evaluate("window.__csp.length"):
            break
        page.wait_for_timeout(100)
    assert page.evaluate("window.__ran === undefined")
    assert any("script-src" in v for v in violations(page, console))


def test_the_api_docs_page_runs_under_the_policy(watched: tuple[Any, list[str]], live_server: Any, db: None) -> None:
    page, console = watched
    page.goto(live_server.url + "/api/v1/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Model Library API")
    assert violations(page, console) == []
