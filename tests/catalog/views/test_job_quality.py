"""The job page and API compare the fine-tune with the frozen-embedding baseline
and show every recipe trial (a real in-process run on the tiny encoder)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from catalog.models import FineTuneJob, JobStatus, ModelVersion
from catalog.services.finetune import finetune_execute
from catalog.services.tokens import api_token_create

pytestmark = pytest.mark.django_db


def post_form(client: Client, tickets_csv: bytes, **extra: Any) -> Any:
    data = {
        "base": "tiny-encoder",
        "name": "Ticket router",
        "file": SimpleUploadedFile("tickets.csv", tickets_csv, content_type="text/csv"),
        "text_column": "text",
        "label_column": "label",
        "domain": "business/support-tickets",
        "epochs": 20,
        "learning_rate": 0.03,
        "batch_size": 32,
        "max_length": 32,
        "unfreeze_layers": 0,
        "encoder_learning_rate": 3e-5,
        "holdout": 0.2,
        "seed": 0,
        "min_precision": 0,
        "visibility": "internal",
    }
    return client.post("/finetune/new/", {**data, **extra})


def test_a_default_fine_tune_shows_the_baseline_comparison_and_its_trial(
    client: Client,
    tiny_encoder: ModelVersion,
    make_user: Any,
    make_team: Any,
    tickets_csv: bytes,
    django_capture_on_commit_callbacks: Any,
) -> None:
    user = make_user("alice", make_team("Team A"))
    assert client.login(username="alice", password="pw-correct-horse")
    with django_capture_on_commit_callbacks():  # the worker's enqueue is not run
        response = post_form(client, tickets_csv, recipe="default", time_budget_s=120)
    assert response.status_code == 302
    job = FineTuneJob.objects.get()
    # The recipe chooses the knobs the form still posts.
    assert job.hyperparameters["recipe"] == "default"
    assert "epochs" not in job.hyperparameters
    done = finetune_execute(job_id=job.pk)
    assert done is not None
    assert done.status == JobStatus.SUCCEEDED, done.error
    baseline, comparison = done.evaluation["baseline"], done.evaluation["comparison"]
    assert done.metrics["baseline_macro_precision"] == baseline["macro_precision"]
    points = 100 * (done.metrics["macro_precision"] - baseline["macro_precision"])
    assert comparison["macro_precision_points"] == pytest.approx(points, abs=0.01)

    page = html.unescape(client.get(f"/jobs/{job.pk}/").content.decode())
    section = page[page.index('id="baseline-comparison"') :]
    if points > 0:
        assert f"beats the frozen-embedding baseline by {points:.1f} points" in section
    else:
        assert "does NOT beat the frozen-embedding baseline" in section
    assert re.search(r'data-model="baseline">.*?' + re.escape(f"{100 * baseline['macro_precision']:.1f}"), section)
    [trial] = done.evaluation["trials"]
    trials = page[page.index('id="trials"') :]
    assert f'data-trial="{trial["name"]}" class="chosen"' in trials
    assert re.search(r'<polyline points="[0-9., ]+" class="curve"/>', trials)
    # Which weights are served: the refit on every training row, or the selection run's.
    if trial["hyperparameters"].get("refit_rows"):
        n, e = (
            trial["hyperparameters"]["refit_rows"],
            trial["hyperparameters"].get("refit_epochs") or trial["best_epoch"],
        )
        assert f"refit on {n} training rows for {e} epoch" in trials
        # The default recipe serves the refit interpolated with its start (WiSE-FT): the page says so.
        weight = trial["hyperparameters"]["interpolation"]
        assert 0 < weight < 1
        assert f"served interpolated with the weights it started from (weight {weight} on the refit" in trials
    else:
        assert "selection run" in trials
    assert "style=" not in trials
    assert "<script" not in trials

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user, name='t')}")
    body = api.get(f"/api/v1/finetune-jobs/{job.pk}/").json()
    assert body["recipe"] == "default"
    assert body["baseline"]["macro_precision"] == pytest.approx(baseline["macro_precision"])
    assert body["comparison"]["beats_baseline"] is (points > 0)
    assert body["trials"][0]["validation_history"][0][0] == 0


def test_a_manual_fine_tune_from_an_older_form_keeps_its_hyperparameters(
    client: Client,
    tiny_encoder: ModelVersion,
    make_user: Any,
    make_team: Any,
    tickets_csv: bytes,
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_user("alice", make_team("Team A"))
    assert client.login(username="alice", password="pw-correct-horse")
    with django_capture_on_commit_callbacks():
        assert post_form(client, tickets_csv, epochs=3).status_code == 302  # no recipe posted
    job = FineTuneJob.objects.get()
    assert (job.hyperparameters["recipe"], job.hyperparameters["epochs"]) == ("manual", 3)
    done = finetune_execute(job_id=job.pk)
    assert done is not None
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.evaluation["trials"] == []
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="baseline-comparison"' in page  # the baseline is scored for every job
    assert 'id="trials"' not in page


def test_an_auto_fine_tune_shows_and_records_every_trial(
    client: Client,
    tiny_encoder: ModelVersion,
    make_user: Any,
    make_team: Any,
    tickets_csv: bytes,
    django_capture_on_commit_callbacks: Any,
) -> None:
    user = make_user("alice", make_team("Team A"))
    assert client.login(username="alice", password="pw-correct-horse")
    with django_capture_on_commit_callbacks():
        assert post_form(client, tickets_csv, recipe="auto", time_budget_s=300).status_code == 302
    job = FineTuneJob.objects.get()
    assert job.hyperparameters["recipe"] == "auto"
    done = finetune_execute(job_id=job.pk)
    assert done is not None
    assert done.status == JobStatus.SUCCEEDED, done.error
    # Recorded in the job: every trial, one of them kept (the best on inner validation).
    trials = done.evaluation["trials"]
    assert len(trials) >= 2
    [kept] = [t for t in trials if t["chosen"]]
    assert kept["validation_macro_f1"] == max(t["validation_macro_f1"] for t in trials)
    assert all(t["loss_history"] and t["validation_history"][0][0] == 0 for t in trials)

    # Shown on the job page: a row per trial, each with its own loss curve.
    page = html.unescape(client.get(f"/jobs/{job.pk}/").content.decode())
    section = page[page.index('id="trials"') :]
    section = section[: section.index("</section>")]
    assert section.count("<tr data-trial=") == len(trials)
    for t in trials:
        row = section[section.index(f'data-trial="{t["name"]}"') :]
        row = row[: row.index("</tr>")]
        assert ('class="chosen"' in row) is t["chosen"]
        assert re.search(r'<polyline points="[0-9., ]+" class="curve"/>', row)
        assert f'<td class="num">{t["epochs_run"]}</td><td class="num">{t["best_epoch"]}</td>' in row

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user, name='t')}")
    body = api.get(f"/api/v1/finetune-jobs/{job.pk}/").json()
    assert body["recipe"] == "auto"
    assert [t["name"] for t in body["trials"]] == [t["name"] for t in trials]
