from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.worker_process import Worker

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_fine_tune_from_the_form_and_watch_the_job(
    page: Any,
    live_server: Any,
    tiny_encoder: Any,
    make_user: Any,
    make_team: Any,
    tickets_csv: bytes,
    tmp_path: Path,
    artifact_store: Path,
) -> None:
    make_user("alice", make_team("Team A"))
    worker = Worker(tmp_path / "worker.log", artifact_store).start()
    try:
        csv_path = tmp_path / "tickets.csv"
        csv_path.write_bytes(tickets_csv)
        page.goto(live_server.url + "/accounts/login/?next=/models/tiny-encoder/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", "pw-correct-horse")
        page.click("button[type=submit]")
        page.click("text=Fine-tune this model…")
        assert page.input_value("#id_base") == "tiny-encoder"

        # A bad file first: the form says why and keeps what was typed.
        bad = tmp_path / "bad.csv"
        bad.write_bytes(b"sentence,label\nhello,a\n")
        page.fill("#id_name", "Ticket router")
        page.set_input_files("#id_file", str(bad))
        page.fill("#id_epochs", "60")
        page.click("button[type=submit]")
        assert "no text column named 'text'" in page.locator(".field-error[data-field=file]").inner_text()
        assert page.input_value("#id_name") == "Ticket router"
        assert page.input_value("#id_epochs") == "60"

        page.set_input_files("#id_file", str(csv_path))
        # The new model is filed under the data's domain, not the base model's.
        assert page.input_value("#id_domain") == "general"
        page.select_option("#id_domain", "business/support-tickets")
        page.fill("#id_epochs", "6")  # enough steps to watch the bar move, few enough for a busy machine
        page.fill("#id_learning_rate", "0.05")
        page.fill("#id_batch_size", "8")
        page.fill("#id_unfreeze_layers", "1")
        page.click("button[type=submit]")
        page.wait_for_url("**/jobs/*/")
        # The bar moves while we watch (htmx polling), then the metrics appear.
        page.wait_for_function(
            "parseFloat(document.querySelector('.progress').getAttribute('aria-valuenow')) > 0", timeout=90_000
        )
        first = float(page.locator(".progress").get_attribute("aria-valuenow"))
        page.wait_for_function(
            f"parseFloat(document.querySelector('.progress').getAttribute('aria-valuenow')) > {first}",
            timeout=90_000,
        )
        page.wait_for_selector("#evaluation", timeout=120_000)
        assert page.locator("#job-status").inner_text() == "Succeeded"
        assert page.locator("svg.loss polyline").count() >= 1  # the job's curve (and one per recipe trial)
        assert "Macro precision" in page.locator("#evaluation").inner_text()
        page.click("text=Ticket router v1")
        assert "Fine-tune job #" in page.locator("#lineage").inner_text()
        assert "Business › Support tickets" in page.locator("#intake").inner_text()
        # Its own weights first (the new head), the encoder marked as the base's when unchanged.
        assert page.locator("#artifact [data-weights]").first.get_attribute("data-weights") == "head.safetensors"
    finally:
        worker.stop()
