"""The page behaviours a new user tripped over (issue 7, item 5), in a real browser."""

from __future__ import annotations

import io
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOG_LINES = "".join(f"12:00:{i % 60:02d} step {i}: loss 0.{i:04d}\n" for i in range(300))


def log_in(page: Any, live_server: Any, next_path: str, username: str = "alice") -> None:
    page.goto(f"{live_server.url}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-correct-horse")
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def end_every_session() -> None:
    from django.contrib.sessions.models import Session

    Session.objects.all().delete()


@pytest.fixture
def job(make_model: Any, make_team: Any, make_user: Any, tickets_csv: bytes) -> Any:
    """A queued job of alice's team (no worker: it stays queued and its page keeps polling)."""
    from catalog.models import FineTuneJob
    from catalog.services.datasets import dataset_upload

    team = make_team("Team A")
    make_user("alice", team)
    base = make_model("Base", team=team).versions.get()
    dataset, _ = dataset_upload(team=team, source=io.BytesIO(tickets_csv), file_name="tickets.csv")
    return FineTuneJob.objects.create(
        team=team, base_version=base, dataset_version=dataset, target_name="Router", log=LOG_LINES
    )


# --- catalogue ---------------------------------------------------------------------


@pytest.fixture
def catalogue(make_model: Any) -> None:
    make_model("Bird photo classifier", modality="image/photo/rgb", precision=0.95)
    make_model("Chest x-ray triage", modality="image/medical/x-ray", precision=0.85)
    make_model("Ticket router", modality="text/natural-language/english", precision=0.75)


def hits(page: Any) -> list[str]:
    return sorted(page.locator("article.hit h2 a").all_inner_texts())


def test_back_after_a_facet_click_puts_the_query_back_in_the_search_box(
    page: Any, live_server: Any, catalogue: None
) -> None:
    page.goto(live_server.url + "/")
    page.fill("#q", "bird")
    page.wait_for_url("**q=bird*")
    page.wait_for_function("document.querySelectorAll('article.hit').length === 1")
    page.locator('[data-facet="modality"] a[data-path="image"]').click()
    page.wait_for_url("**modality=image*")
    page.go_back()
    page.wait_for_function("!location.search.includes('modality')")
    assert "q=bird" in page.url
    page.wait_for_function("document.querySelector('#q').value === 'bird'")
    assert hits(page) == ["Bird photo classifier"]


def test_pagination_brings_the_results_into_view(page: Any, live_server: Any, make_model: Any, settings: Any) -> None:
    settings.CATALOG_PAGE_SIZE = 12
    for i in range(30):
        make_model(f"Paged model {i:02d}")
    page.set_viewport_size({"width": 1000, "height": 600})
    page.goto(live_server.url + "/")
    page.locator("nav.pagination a[rel=next]").scroll_into_view_if_needed()
    assert page.evaluate("window.scrollY") > 300
    page.locator("nav.pagination a[rel=next]").click()
    page.wait_for_url("**page=2*")
    page.wait_for_function("document.querySelector('nav.pagination span').textContent.includes('Page 2')")
    page.wait_for_function("document.querySelector('#results').getBoundingClientRect().top >= -1")
    top = page.evaluate("document.querySelector('#results').getBoundingClientRect().top")
    assert 0 <= top < 600


def test_min_precision_is_typed_in_percent(page: Any, live_server: Any, catalogue: None) -> None:
    page.goto(live_server.url + "/")
    assert "%" in page.locator("label:has(#min_precision)").inner_text()
    page.fill("#min_precision", "90")
    page.locator("#min_precision").dispatch_event("change")
    page.wait_for_url("**min_precision=90*")
    page.wait_for_function("document.querySelectorAll('article.hit').length === 1")
    assert hits(page) == ["Bird photo classifier"]


def test_no_empty_facet_cards_and_a_coherent_page_past_the_end(page: Any, live_server: Any, catalogue: None) -> None:
    page.goto(live_server.url + "/?q=zzzz-nothing")
    assert page.locator("p.empty").is_visible()
    assert page.locator("section.facet").count() == 0
    page.goto(live_server.url + "/?page=9999")
    assert page.locator("#past-end").is_visible()
    assert page.locator("p.empty").count() == 0
    assert len(hits(page)) == 3


# --- job page ------------------------------------------------------------------------


def test_a_poll_after_logout_sends_the_whole_page_to_login(page: Any, live_server: Any, job: Any) -> None:
    log_in(page, live_server, f"/jobs/{job.pk}/")
    assert page.locator("#live[hx-trigger]").count() == 1
    end_every_session()
    page.wait_for_url(f"**/accounts/login/?next=%2Fjobs%2F{job.pk}%2F", timeout=10_000)
    # The login page is the page, not a fragment swapped inside the job page.
    assert page.locator("#live").count() == 0
    assert page.locator("form input#id_username").count() == 1


def test_the_log_opens_at_the_bottom_and_keeps_its_place_while_polling(page: Any, live_server: Any, job: Any) -> None:
    from catalog.models import FineTuneJob

    log_in(page, live_server, f"/jobs/{job.pk}/")
    at_bottom = "(b => b.scrollTop + b.clientHeight >= b.scrollHeight - 2)(document.querySelector('pre.log'))"
    page.wait_for_function(at_bottom)
    # The reader scrolls up to read; the page polls every second meanwhile.
    page.evaluate("document.querySelector('pre.log').scrollTop = 120")
    FineTuneJob.objects.filter(pk=job.pk).update(log=LOG_LINES + "12:01:00 a new line\n")
    page.wait_for_function("document.querySelector('pre.log').textContent.includes('a new line')")
    page.wait_for_timeout(1500)  # and another poll or two
    assert page.evaluate("document.querySelector('pre.log').scrollTop") == 120
    # Back at the bottom, it follows new lines.
    page.evaluate("(b => { b.scrollTop = b.scrollHeight; })(document.querySelector('pre.log'))")
    FineTuneJob.objects.filter(pk=job.pk).update(log=LOG_LINES + "12:01:00 a new line\n12:01:01 and another\n")
    page.wait_for_function("document.querySelector('pre.log').textContent.includes('and another')")
    page.wait_for_function(at_bottom)


def test_a_finished_jobs_log_opens_at_the_bottom(page: Any, live_server: Any, job: Any) -> None:
    from catalog.models import FineTuneJob, JobStatus

    FineTuneJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error="boom")
    log_in(page, live_server, f"/jobs/{job.pk}/")
    page.wait_for_function(
        "(b => b.scrollHeight > b.clientHeight && b.scrollTop + b.clientHeight >= b.scrollHeight - 2)"
        "(document.querySelector('pre.log'))"
    )


def test_cancel_asks_for_confirmation(page: Any, live_server: Any, job: Any) -> None:
    from catalog.models import JobStatus

    log_in(page, live_server, f"/jobs/{job.pk}/")
    messages: list[str] = []

    def dismiss(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click("#cancel-form button")
    page.wait_for_timeout(500)
    assert messages
    assert messages[0].startswith(f"Cancel fine-tune job #{job.pk}?")
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-form button")
    page.wait_for_function("document.querySelector('#job-status').textContent === 'Cancelled'")
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


# --- fine-tune form ----------------------------------------------------------------------


def test_submitting_after_the_session_ended_says_so_and_keeps_the_input(
    page: Any, live_server: Any, job: Any, tmp_path: Any, tickets_csv: bytes
) -> None:
    from catalog.models import Dataset

    datasets = Dataset.objects.count()
    csv_path = tmp_path / "tickets.csv"
    csv_path.write_bytes(tickets_csv)
    log_in(page, live_server, "/finetune/new/")
    page.fill("#id_name", "My router")
    page.fill("#id_epochs", "7")
    page.set_input_files("#id_file", str(csv_path))
    end_every_session()
    page.click("button[type=submit]")
    assert "Your session ended" in page.locator("#session-ended").inner_text()
    assert Dataset.objects.count() == datasets
    page.click("#session-ended a.button")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "pw-correct-horse")
    page.click("button[type=submit]")
    page.wait_for_url("**/finetune/new/?*")
    assert page.input_value("#id_name") == "My router"
    assert page.input_value("#id_epochs") == "7"


# --- model page ---------------------------------------------------------------------------


@pytest.fixture
def fine_tuned(make_model: Any, make_team: Any, tickets_csv: bytes) -> Any:
    """A model with a long name, a base, a dataset and served + rejected + skipped variants."""
    from catalog.models import Variant
    from catalog.services.datasets import dataset_upload
    from catalog.services.registry import model_version_create, model_version_finish

    team = make_team("Team A")
    base = make_model("All purpose sentence encoder for English text", team=team)
    dataset, _ = dataset_upload(
        team=team, source=io.BytesIO(tickets_csv), file_name="t.csv", name="Customer support tickets 2024"
    )
    model = make_model("Customer support ticket router for the help desk", team=team)
    version = model_version_create(
        registered_model=model,
        family="mlp-classifier",
        files=model.versions.get().files,
        base_version=base.versions.get(),
        dataset_version=dataset,
    )
    model_version_finish(version=version)
    for name, precision, status in (
        ("onnx-fp32", "fp32", "served"),
        ("onnx-int8", "int8", "rejected"),
        ("onnx-fp16-cuda", "fp16", "skipped"),
    ):
        Variant.objects.create(
            version=version,
            name=name,
            format="onnx",
            precision=precision,
            runtime="onnxruntime",
            status=status,
            latency={"1": {"p50_ms": 3.0, "p95_ms": 4.0}, "32": {"p50_ms": 20.0, "p95_ms": 24.0}},
            latency_p50_ms=3.0,
            latency_p95_ms=4.0,
            hardware_fingerprint={"cpu": "Test CPU 9000", "cores": 2, "isa": ["avx2"], "onnxruntime": "1.99"},
        )
    return model


def test_variants_are_drawn_by_status_and_titles_are_cut_at_words(page: Any, live_server: Any, fine_tuned: Any) -> None:
    page.goto(f"{live_server.url}/models/{fine_tuned.slug}/?version=2")

    def fill(status: str) -> str:
        return str(
            page.eval_on_selector(f"svg.lineage g.variant.status-{status} rect", "r => getComputedStyle(r).fill")
        )

    assert len({fill("served"), fill("rejected"), fill("skipped")}) == 3
    titles = page.locator("svg.lineage text.t").all_text_contents()
    names = (
        fine_tuned.name,
        "All purpose sentence encoder for English text",
        "Customer support tickets 2024",
    )
    words = {word for name in names for word in name.split()}
    assert any(title.endswith("…") for title in titles)
    for title in titles:
        if title.endswith("…"):
            assert all(word in words for word in title[:-1].split()), title
    assert page.locator("svg.lineage g.base title").text_content() == "All purpose sentence encoder for English text"
    assert "measured on Test CPU 9000 · 2 cores · avx2 · onnxruntime 1.99" in page.locator("#measured-on").inner_text()
    assert "--precision fp32" in page.locator("pre.pull").inner_text()


def test_the_model_page_fits_a_phone(page: Any, live_server: Any, fine_tuned: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/models/{fine_tuned.slug}/?version=2")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    page.goto(f"{live_server.url}/")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
