"""The compare page's rules and the GET lists (datasets, fine-tune jobs, evaluations)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from catalog.models import Visibility

pytestmark = pytest.mark.django_db


def test_compare_hides_private_models_like_missing_ones(
    make_model: Callable[..., Any], make_team: Callable[..., Any], make_user: Callable[..., Any]
) -> None:
    team_a, team_b = make_team("Team A"), make_team("Team B")
    public = make_model("Open model", team=team_a)
    secret = make_model("Secret model", team=team_a, visibility=Visibility.PRIVATE)
    outsider = Client()
    outsider.force_login(make_user("bob", team_b))
    hidden = outsider.get(f"/compare/?models={public.slug},{secret.slug}")
    missing = outsider.get(f"/compare/?models={public.slug},no-such-model")
    assert hidden.status_code == missing.status_code == 404

    # Byte for byte, once the slug asked for and the per-response CSRF mask are set aside.
    def same(body: bytes, slug: str) -> bytes:
        return re.sub(rb"[A-Za-z0-9]{64}", b"CSRF", body.replace(slug.encode(), b"X"))

    assert same(hidden.content, secret.slug) == same(missing.content, "no-such-model")
    insider = Client()
    insider.force_login(make_user("alice", team_a))
    shown = insider.get(f"/compare/?models={public.slug}&models={secret.slug}")
    assert shown.status_code == 200
    assert b"Secret model" in shown.content


def test_compare_aligns_shared_metrics_and_marks_the_best(make_model: Callable[..., Any]) -> None:
    from catalog.services.registry import metrics_record

    a, b = make_model("A", precision=0.7), make_model("B", precision=0.9)
    metrics_record(version=a.latest_version, metrics={"latency_ms": 3.0}, evaluation_dataset="bench")
    metrics_record(version=b.latest_version, metrics={"latency_ms": 5.0}, evaluation_dataset="bench")
    from catalog.selectors.compare import models_compare

    cmp, missing = models_compare(user=None, slugs=[a.slug, b.slug])
    assert cmp is not None
    assert not missing
    rows = {(r.section, r.label): r for r in cmp.metric_rows}
    precision = rows[("unit holdout", "macro_precision")]
    assert [c.best for c in precision.cells] == [False, True]
    latency = rows[("bench", "latency_ms")]
    assert [c.best for c in latency.cells] == [True, False]  # lower is better
    assert Client().get("/compare/?models=" + a.slug).status_code == 400  # one model is not a comparison


def test_the_lists_are_paginated_and_filtered_by_team_and_status(
    make_team: Callable[..., Any], make_user: Callable[..., Any], tickets_csv: bytes, tiny_encoder: Any
) -> None:
    import io

    from catalog.models import JobStatus
    from catalog.services.datasets import dataset_upload
    from catalog.services.finetune import finetune_request
    from catalog.services.tokens import api_token_create

    team_a, team_b = make_team("Team A"), make_team("Team B")
    user = make_user("alice", team_a)
    team_b.members.add(user)
    other = make_user("bob", team_b)
    for i, team in enumerate((team_a, team_a, team_b)):
        dataset, _ = dataset_upload(
            team=team,
            source=io.BytesIO(tickets_csv + f"extra row {i},billing\n".encode()),
            file_name="t.csv",
            name=f"D{i}",
        )
        job = finetune_request(
            team=team, base_version=tiny_encoder, dataset_version=dataset, name=f"J{i}", enqueue=False
        )
    job.status = JobStatus.FAILED
    job.save(update_fields=["status"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user, name='t')}")
    page1 = client.get("/api/v1/datasets/?page_size=2").json()
    assert page1["count"] == 3
    assert page1["pages"] == 2
    assert len(page1["results"]) == 2
    assert page1["next"].startswith("http://testserver/api/v1/datasets/?")
    assert page1["previous"] is None
    assert client.get(page1["next"]).json()["results"][0]["id"] not in {r["id"] for r in page1["results"]}
    assert client.get("/api/v1/datasets/?team=team-b").json()["count"] == 1
    assert client.get("/api/v1/datasets/?page=9").status_code == 404
    jobs = client.get("/api/v1/finetune-jobs/?status=failed").json()
    assert [j["id"] for j in jobs["results"]] == [job.pk]
    assert client.get("/api/v1/finetune-jobs/?status=nonsense").status_code == 400
    assert client.get("/api/v1/finetune-jobs/?team=team-a").json()["count"] == 2
    assert client.get("/api/v1/evaluations/").json() == {
        "count": 0,
        "page": 1,
        "pages": 1,
        "next": None,
        "previous": None,
        "results": [],
    }
    bob = APIClient()
    bob.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=other, name='t')}")
    assert bob.get("/api/v1/datasets/").json()["count"] == 1  # only team B's
    assert APIClient().get("/api/v1/datasets/").status_code == 401
    # The pages.
    browser = Client()
    browser.force_login(user)
    assert browser.get("/jobs/?status=failed").content.decode().count("data-job=") == 1
    assert browser.get("/datasets/?team=team-a").content.decode().count("data-dataset=") == 2
