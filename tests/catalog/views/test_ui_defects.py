"""The defects a new user met on the pages (issue 7, item 5), server side."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from catalog.models import Dataset, DatasetVersion, FineTuneJob, JobStatus, ModelVersion, Visibility
from catalog.services.datasets import dataset_upload
from catalog.services.finetune import finetune_request, finetune_target_model, finetune_target_slug
from catalog.services.registry import model_version_create, model_version_finish
from catalog.views.finetune import confusion_view

pytestmark = pytest.mark.django_db


def body(response: Any) -> str:
    return response.content.decode()


def login(client: Client, username: str) -> None:
    assert client.login(username=username, password="pw-correct-horse")


# --- model page -------------------------------------------------------------------


def test_an_unknown_version_is_a_404_not_another_version(client: Client, make_model: Any) -> None:
    make_model("Versioned")
    assert client.get("/models/versioned/?version=1").status_code == 200
    assert client.get("/models/versioned/?version=99").status_code == 404
    assert client.get("/models/versioned/?version=x").status_code == 404


def test_the_pull_command_names_a_variant_that_is_served(client: Client, make_model: Any) -> None:
    make_model(
        "Cancer",
        variants=[
            {"precision": "fp32", "p95": 12.0},
            {"name": "onnx-int8", "precision": "int8", "p95": 3.0, "status": "rejected"},
        ],
    )
    pull = re.search(r'<pre class="pull">(.*?)</pre>', body(client.get("/models/cancer/")), re.S)
    assert pull is not None
    assert "--precision fp32" in pull.group(1)
    assert "int8" not in pull.group(1)
    make_model("Unbuilt", variants=[{"precision": "int8", "status": "rejected"}])
    page = body(client.get("/models/unbuilt/"))
    assert '<pre class="pull">' not in page
    assert "nothing to pull yet" in page


def test_metrics_have_human_names_and_percentages(client: Client, make_model: Any) -> None:
    make_model("Measured", precision=0.9123, coverage=0.5)
    page = body(client.get("/models/measured/"))
    row = re.search(r'<tr data-metric="macro_precision">(.*?)</tr>', page, re.S)
    assert row is not None
    assert "Macro precision" in row.group(1)
    assert "91.2%" in row.group(1)
    assert "0.9123" not in page


# --- lineage across visibility ------------------------------------------------------


@pytest.fixture
def derived(make_model: Any, make_team: Any, make_user: Any, tickets_csv: bytes) -> dict[str, Any]:
    """An internal model of team A fine-tuned from team A's private model on team A's data."""
    team_a, team_b = make_team("Team A"), make_team("Team B")
    make_user("alice", team_a)
    make_user("bob", team_b)
    base = make_model("Secret base", team=team_a, visibility=Visibility.PRIVATE)
    dataset, _ = dataset_upload(
        team=team_a, source=io.BytesIO(tickets_csv), file_name="t.csv", name="Confidential tickets"
    )
    child = make_model("Public child", team=team_a)
    v1 = child.versions.get()
    version = model_version_create(
        registered_model=child,
        family="mlp-classifier",
        files=v1.files,
        base_version=base.versions.get(),
        dataset_version=dataset,
    )
    model_version_finish(version=version)
    return {"version": version, "dataset": dataset}


@pytest.mark.parametrize("viewer", [None, "bob"])
def test_lineage_hides_a_private_base_and_another_teams_dataset(
    client: Client, derived: dict[str, Any], viewer: str | None
) -> None:
    if viewer:
        login(client, viewer)
    page = body(client.get("/models/public-child/?version=2"))
    assert "Private model" in page
    assert "Training data" in page
    for secret in ("Secret base", "secret-base", "Confidential tickets", derived["dataset"].sha256[:8]):
        assert secret not in page, secret


def test_lineage_shows_everything_to_the_owning_team(client: Client, derived: dict[str, Any]) -> None:
    login(client, "alice")
    page = body(client.get("/models/public-child/?version=2"))
    for shown in (
        "Secret base",
        "/models/secret-base/?version=1",
        "Confidential tickets",
        derived["dataset"].sha256[:8],
    ):
        assert shown in page, shown


# --- the fine-tune name is not an oracle ------------------------------------------------


@pytest.mark.parametrize("visibility", [Visibility.PRIVATE, Visibility.INTERNAL])
def test_a_name_held_by_another_team_gets_a_scoped_slug_whatever_its_visibility(
    make_model: Any, make_team: Any, tiny_encoder: ModelVersion, tickets_csv: bytes, visibility: str
) -> None:
    team_a, team_b = make_team("Team A"), make_team("Team B")
    make_model("Ticket router", team=team_a, visibility=visibility)
    dataset, _ = dataset_upload(team=team_b, source=io.BytesIO(tickets_csv), file_name="t.csv")
    job = finetune_request(team=team_b, base_version=tiny_encoder, dataset_version=dataset, name="Ticket router")
    assert job.status == JobStatus.QUEUED
    assert job.target_model is None  # never team A's model
    assert finetune_target_slug(team=team_b, name="Ticket router") == "ticket-router-team-b"
    assert finetune_target_slug(team=team_a, name="Ticket router") == "ticket-router"
    # Team B's own model of that name, once it exists, is the one a second job adds to.
    mine = make_model("Ticket router x", team=team_b)
    mine.slug = "ticket-router-team-b"
    mine.save()
    assert finetune_target_model(team=team_b, name="Ticket router") == mine


# --- the fine-tune form ----------------------------------------------------------------


def form_data(tickets_csv: bytes, **extra: Any) -> dict[str, Any]:
    data = {
        "base": "tiny-encoder",
        "name": "Ticket router",
        "file": SimpleUploadedFile("tickets.csv", tickets_csv, content_type="text/csv"),
        "text_column": "text",
        "label_column": "label",
        "domain": "business/support-tickets",
        "epochs": 2,
        "learning_rate": 0.03,
        "batch_size": 8,
        "max_length": 32,
        "unfreeze_layers": 0,
        "encoder_learning_rate": 3e-5,
        "holdout": 0.2,
        "seed": 0,
        "min_precision": 50,
        "visibility": "internal",
    }
    return {**data, **extra}


def test_a_refused_job_stores_no_dataset(
    client: Client, tiny_encoder: ModelVersion, make_user: Any, make_team: Any, tickets_csv: bytes, artifact_store: Path
) -> None:
    make_user("alice", make_team("Team A"))
    login(client, "alice")
    before = {p.name for p in artifact_store.rglob("*") if p.is_file()}  # the base model's files
    response = client.post("/finetune/new/", form_data(tickets_csv, name="!!!"))
    assert response.status_code == 200
    assert "Give the new model a name with letters or digits" in body(response)
    assert Dataset.objects.count() == DatasetVersion.objects.count() == FineTuneJob.objects.count() == 0
    assert {p.name for p in artifact_store.rglob("*") if p.is_file()} == before


def test_the_form_uses_the_chosen_team_domain_and_a_percent_gate(
    client: Client, tiny_encoder: ModelVersion, make_user: Any, make_team: Any, tickets_csv: bytes
) -> None:
    user = make_user("alice", make_team("Team A"))
    make_team("Team B").members.add(user)
    login(client, "alice")
    page = body(client.get("/finetune/new/?base=tiny-encoder"))
    assert "Choose a team…" in page  # two teams: no silent first pick
    assert re.search(r'<option value="general" selected>', page)
    refused = client.post("/finetune/new/", form_data(tickets_csv))
    assert refused.status_code == 200
    assert 'data-field="team"' in body(refused)
    assert FineTuneJob.objects.count() == 0
    response = client.post("/finetune/new/", form_data(tickets_csv, team="team-b"))
    assert response.status_code == 302
    job = FineTuneJob.objects.get()
    assert job.team.slug == "team-b"
    assert job.dataset_version.dataset.team.slug == "team-b"
    domain = job.dataset_version.dataset.domain
    assert domain is not None
    assert domain.path == "business/support-tickets"
    assert job.min_precision == pytest.approx(0.5)


def test_a_superuser_must_choose_a_team(
    client: Client, tiny_encoder: ModelVersion, make_team: Any, tickets_csv: bytes, django_user_model: Any
) -> None:
    make_team("Team A")
    make_team("Team B")
    django_user_model.objects.create_superuser("root", password="pw-correct-horse")
    login(client, "root")
    assert "Choose a team…" in body(client.get("/finetune/new/"))
    refused = client.post("/finetune/new/", form_data(tickets_csv))
    assert 'data-field="team"' in body(refused)
    assert Dataset.objects.count() == 0


def test_a_member_of_one_team_has_it_preselected(
    client: Client, tiny_encoder: ModelVersion, make_user: Any, make_team: Any
) -> None:
    make_user("alice", make_team("Team A"))
    login(client, "alice")
    page = body(client.get("/finetune/new/"))
    assert "Choose a team…" not in page
    assert re.search(r'<option value="team-a" selected>', page)


def test_submitting_after_the_session_ended_says_so_and_keeps_the_input(
    client: Client, tiny_encoder: ModelVersion, tickets_csv: bytes
) -> None:
    response = client.post("/finetune/new/", form_data(tickets_csv, name="My router", epochs=7))
    assert response.status_code == 403
    page = body(response)
    assert "Your session ended" in page
    assert Dataset.objects.count() == 0
    link = re.search(r'<a class="button" href="(/accounts/login/\?next=[^"]+)"', page)
    assert link is not None
    from urllib.parse import parse_qs, urlparse

    back = parse_qs(urlparse(link.group(1).replace("&amp;", "&")).query)["next"][0]
    assert back.startswith("/finetune/new/?")
    assert parse_qs(urlparse(back).query)["name"] == ["My router"]


def test_the_form_takes_its_fields_from_the_query_string(
    client: Client, tiny_encoder: ModelVersion, make_user: Any, make_team: Any
) -> None:
    make_user("alice", make_team("Team A"))
    login(client, "alice")
    page = body(client.get("/finetune/new/?base=tiny-encoder&name=My+router&epochs=7"))
    assert 'value="My router"' in page
    assert 'name="epochs" value="7"' in page


# --- the job page ------------------------------------------------------------------


@pytest.fixture
def job(tiny_encoder: ModelVersion, make_team: Any, make_user: Any, tickets_csv: bytes) -> FineTuneJob:
    team = make_team("Team A")
    make_user("alice", team)
    dataset, _ = dataset_upload(team=team, source=io.BytesIO(tickets_csv), file_name="t.csv")
    return finetune_request(team=team, base_version=tiny_encoder, dataset_version=dataset, name="R", enqueue=False)


def test_a_poll_after_logout_redirects_the_page_to_login(client: Client, job: FineTuneJob) -> None:
    response = client.get(f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert response.status_code == 286  # polling stops
    assert response["HX-Redirect"] == f"/accounts/login/?next=%2Fjobs%2F{job.pk}%2F"
    assert b"<form" not in response.content
    assert client.get(f"/jobs/{job.pk}/").status_code == 302  # a plain request: the usual redirect


def test_cancel_asks_first(client: Client, job: FineTuneJob) -> None:
    login(client, "alice")
    page = body(client.get(f"/jobs/{job.pk}/"))
    assert re.search(r'id="cancel-form"\s+data-confirm="Cancel fine-tune job', page)


def test_a_large_confusion_matrix_is_folded(client: Client, job: FineTuneJob) -> None:
    n = 200
    labels = [f"label-{i:03d}" for i in range(n)]
    confusion = [[(5 if i == j else 1) + (i < 3) * 50 for j in range(n)] for i in range(n)]
    FineTuneJob.objects.filter(pk=job.pk).update(
        status=JobStatus.SUCCEEDED,
        metrics={"macro_precision": 0.5},
        evaluation={"labels": labels, "confusion": confusion, "per_class": []},
    )
    login(client, "alice")
    response = client.get(f"/jobs/{job.pk}/")
    page = body(response)
    assert len(response.content) < 200_000
    assert "other (180 classes)" in page
    assert page.count('class="num diag"') == 20


def test_confusion_view_keeps_every_count() -> None:
    labels = ["a", "b", "c", "d"]
    matrix = [[5, 1, 0, 0], [2, 9, 0, 1], [0, 0, 1, 0], [0, 3, 0, 2]]
    folded_labels, folded, rest = confusion_view(labels, matrix, limit=2)
    assert folded_labels == ["a", "b", "other (2 classes)"]
    assert folded == [[5, 1, 0], [2, 9, 1], [0, 3, 3]]
    assert rest == 2
    assert sum(map(sum, folded)) == sum(map(sum, matrix))
    assert confusion_view(labels, matrix, limit=4) == (labels, matrix, 0)


# --- the catalogue --------------------------------------------------------------------


def test_a_page_past_the_end_shows_the_last_page(client: Client, make_model: Any) -> None:
    for i in range(3):
        make_model(f"Paged {i}")
    page = body(client.get("/", {"page": 9999}))
    assert "There is no page 9999" in page
    assert "No model matches" not in page
    assert page.count('class="hit"') == 3


def test_min_precision_is_a_percentage_on_the_page(client: Client, make_model: Any) -> None:
    make_model("Good", precision=0.95)
    make_model("Fair", precision=0.85)
    page = body(client.get("/", {"min_precision": "90"}))
    assert "Good" in page
    assert "Fair summary" not in page
    assert 'name="min_precision" min="0" max="100" step="any" value="90"' in page
    assert "percentage from 0 to 100" in body(client.get("/", {"min_precision": "150"}))


def test_zero_results_draw_no_empty_facet_cards(client: Client, make_model: Any) -> None:
    make_model("Only one")
    page = body(client.get("/", {"q": "nothing-matches-this"}))
    assert "No model matches" in page
    assert 'class="facet"' not in page


def test_a_history_restore_request_gets_the_whole_page(client: Client, make_model: Any) -> None:
    make_model("Restored")
    response = client.get("/", {"q": "restored"}, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<html" in body(response)


def test_a_fine_tune_from_the_form_is_filed_under_the_chosen_domain_with_its_own_weights(
    client: Client,
    tiny_encoder: ModelVersion,
    make_user: Any,
    make_team: Any,
    tickets_csv: bytes,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from catalog.services.finetune import finetune_execute

    make_user("alice", make_team("Team A"))
    login(client, "alice")
    with django_capture_on_commit_callbacks():  # the worker's enqueue is not run
        response = client.post("/finetune/new/", form_data(tickets_csv, min_precision=0))
    assert response.status_code == 302
    done = finetune_execute(job_id=FineTuneJob.objects.get().pk)
    assert done is not None
    assert done.status == JobStatus.SUCCEEDED, done.error
    model = done.result_version.registered_model  # type: ignore[union-attr]
    assert model.domain.path == "business/support-tickets"  # not the encoder's general/wikipedia
    page = body(client.get(f"/models/{model.slug}/"))
    weights = re.findall(r'data-weights="([^"]+)"', page)
    assert weights[0] == "head.safetensors"
    head = next(f for f in done.result_version.files if f["name"] == "head.safetensors")  # type: ignore[union-attr]
    assert head["sha256"][:12] in page


def test_the_api_lineage_summary_follows_the_same_rule(derived: dict[str, Any], django_user_model: Any) -> None:
    from django.contrib.auth.models import AnonymousUser

    from catalog.selectors.lineage import lineage_summary

    version = derived["version"]
    hidden = lineage_summary(version=version, user=AnonymousUser())
    assert hidden["base"] == {"model": None, "version": None, "private": True}
    assert hidden["dataset_version"] == {"id": None, "sha256": None, "rows": derived["dataset"].rows}
    bob = lineage_summary(version=version, user=django_user_model.objects.get(username="bob"))
    assert bob == hidden
    alice = lineage_summary(version=version, user=django_user_model.objects.get(username="alice"))
    assert alice["base"] == {"model": "secret-base", "version": 1, "private": False}
    assert alice["dataset_version"]["sha256"] == derived["dataset"].sha256


def test_a_listed_file_missing_from_the_store_is_a_404_not_a_500(
    client: Client, make_model: Any, artifact_store: Path
) -> None:
    make_model("Lost")
    for blob in [p for p in artifact_store.rglob("*") if p.is_file()]:
        blob.unlink()
    assert client.get("/models/lost/v1/files/model.safetensors").status_code == 404


def test_a_poll_for_a_job_no_longer_visible_reloads_the_page(
    client: Client, job: FineTuneJob, make_user: Any, make_team: Any
) -> None:
    make_user("bob", make_team("Team B"))
    login(client, "bob")
    response = client.get(f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert response.status_code == 286
    assert response["HX-Refresh"] == "true"
    assert client.get(f"/jobs/{job.pk}/").status_code == 404
