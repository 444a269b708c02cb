"""Register a model from the web page in a real browser: pick a folder, watch
the upload, see what was read, confirm; then a maintainer promotes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from catalog.roles import Role
from catalog.services.teams import membership_set
from tests.registration_folders import LABELS, make_hf_folder

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CARD = "---\nlicense: apache-2.0\ntags: [support]\n---\n# Ticket router\n\n<script>window.pwned = 1</script>\n"


def login(page: Any, live_server: Any, username: str, next_url: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-correct-horse")
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_url}")


def test_register_a_folder_then_promote(
    page: Any, live_server: Any, taxonomy: None, make_user: Any, make_team: Any, tmp_path: Path
) -> None:
    team = make_team("Team A")
    membership_set(team=team, user=make_user("alice"), role=Role.MEMBER)
    membership_set(team=team, user=make_user("mona"), role=Role.MAINTAINER)
    folder = make_hf_folder(tmp_path / "ticket-router", kind="distilbert", readme=CARD)
    (folder / "pytorch_model.bin").write_bytes(b"a pickle")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    login(page, live_server, "alice", "/register/")
    # A folder with a pickle in it: refused with the reason, nothing stored.
    page.set_input_files("#folder-input", str(folder))
    assert "pytorch_model.bin" in page.inner_text("#chosen")
    page.click("#upload-button")
    page.wait_for_selector("[data-refused]")
    assert "pickle" in page.inner_text("[data-refused]")

    (folder / "pytorch_model.bin").unlink()
    page.set_input_files("#folder-input", str(folder))
    page.click("#upload-button")
    page.wait_for_selector("[data-proposal]")
    assert page.get_attribute("#upload-progress", "value") == "100"
    assert page.inner_text("[data-family]") == "sequence-classifier"
    assert page.inner_text("[data-labels]").split() == LABELS
    assert page.input_value("select[name=result]") == "classification/multiclass"
    page.fill("input[name=name]", "Ticket router")
    page.select_option("select[name=domain]", "general/news")
    page.click("#register-confirm button[type=submit]")
    page.wait_for_url("**/models/ticket-router/?version=1")
    assert page.inner_text("[data-card] h1") == "Ticket router"
    assert page.evaluate("window.pwned === undefined")
    assert "licence: apache-2.0" in page.inner_text("#registration")
    assert page.locator("#promote-form").count() == 0  # members do not promote

    page.click("form.inline button.link")  # log out
    login(page, live_server, "mona", "/models/ticket-router/")
    page.select_option("#promote-form select[name=alias]", "production")
    page.click("#promote-form button")
    page.wait_for_selector(".badge.alias")
    assert "production → v1" in page.inner_text("h1")
    assert "promoted" in page.inner_text("#audit-log")
    assert not errors
