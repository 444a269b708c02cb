"""Concurrent writers against the real database (a SQLite file, or PostgreSQL
when DATABASE_URL is set): real threads, each with its own connection, and
committed transactions (``transaction=True``). Every writer must succeed and
nothing may be duplicated."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connection
from rest_framework.test import APIClient

from catalog.models import DatasetVersion, FineTuneJob, JobStatus, ModelVersion, RegisteredModel
from catalog.services.datasets import dataset_upload
from catalog.services.finetune import finetune_execute, finetune_request
from catalog.services.retry import db_retry
from conftest import ticket_csv

pytestmark = pytest.mark.django_db(transaction=True)


def run_threads(n: int, work: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Start ``n`` threads at once (a barrier), each calling ``work(i)`` on its
    own database connection; returns their results and their exceptions."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer thread hung"
    return results, errors


@pytest.fixture
def member(make_team: Any, make_user: Any) -> Any:
    return make_user("alice", make_team("Team A"))


def test_concurrent_dataset_uploads_all_succeed_without_duplicates(member: Any, taxonomy: None) -> None:
    shared = ticket_csv(60, seed=1)
    n = 12

    def upload(i: int) -> tuple[int, int, int, int]:
        client = APIClient()
        client.force_authenticate(member)
        answers = []
        for data, name in ((shared, "Shared"), (ticket_csv(40, seed=100 + i), f"Own {i}")):
            f = io.BytesIO(data)
            f.name = "tickets.csv"
            r = client.post("/api/v1/datasets/", {"file": f, "name": name}, format="multipart")
            answers += [r.status_code, r.json().get("id")]
        return answers[0], answers[1], answers[2], answers[3]

    results, errors = run_threads(n, upload)
    assert errors == []
    assert all(r[0] in (200, 201) and r[2] == 201 for r in results), results
    # The same bytes under the same name are one version, whoever won the race.
    assert len({r[1] for r in results}) == 1
    assert [r[0] for r in results].count(201) == 1
    assert DatasetVersion.objects.filter(dataset__name="Shared").count() == 1
    assert DatasetVersion.objects.count() == n + 1


def test_concurrent_job_requests_each_create_one_job(
    member: Any, tiny_encoder: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, _ = dataset_upload(team=member.teams.get(), source=io.BytesIO(ticket_csv()), file_name="t.csv")
    enqueued: list[int] = []
    monkeypatch.setattr("catalog.services.finetune.finetune_enqueue", lambda *, job_id: enqueued.append(job_id))
    n = 10

    def request(i: int) -> int:
        client = APIClient()
        client.force_authenticate(member)
        r = client.post(
            "/api/v1/finetune-jobs/",
            {"base": "tiny-encoder", "dataset": dataset.pk, "name": "Router"},
            format="json",
        )
        assert r.status_code == 201, r.content
        return int(r.json()["id"])

    ids, errors = run_threads(n, request)
    assert errors == []
    assert len(set(ids)) == n
    assert FineTuneJob.objects.filter(status=JobStatus.QUEUED).count() == n
    assert sorted(enqueued) == sorted(ids)  # each enqueued once, after its commit


def _fake_fit(calls: list[int]) -> Callable[..., Any]:
    """Stands in for training: writes a weights file and returns what the
    runner returns, in milliseconds."""

    def fit(base_dir: Path, texts: list[str], labels: list[str], out: Path, params: Any, **kw: Any) -> Any:
        calls.append(1)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.safetensors").write_bytes(b"trained weights " + str(len(calls)).encode())
        report = SimpleNamespace(
            macro_precision=0.9,
            coverage=0.8,
            samples=len(texts),
            headline=lambda: {"macro_precision": 0.9, "coverage": 0.8},
            as_dict=lambda: {"macro_precision": 0.9},
        )
        return SimpleNamespace(
            output_dir=out,
            files=["model.safetensors"],
            report=report,
            labels=sorted(set(labels)),
            params={**params.as_dict(), "max_length": 128, "holdout": 0.2, "seed": 0},
            parameter_count=10,
            holdout_rows=len(texts) // 5,
            device="cpu",
            seconds={"total": 0.01},
            baseline={},
            comparison=None,
            recipe="default",
        )

    return fit


@pytest.fixture
def queued_jobs(member: Any, tiny_encoder: ModelVersion) -> Callable[[int, str], list[int]]:
    team = member.teams.get()
    dataset, _ = dataset_upload(team=team, source=io.BytesIO(ticket_csv()), file_name="t.csv")

    def make(n: int, name: str) -> list[int]:
        return [
            finetune_request(team=team, base_version=tiny_encoder, dataset_version=dataset, name=name, enqueue=False).pk
            for _ in range(n)
        ]

    return make


def test_concurrent_job_completion_registers_each_job_once(
    queued_jobs: Callable[[int, str], list[int]], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.DB_RETRY_FIRST_DELAY_S = 0.05
    calls: list[int] = []
    monkeypatch.setattr("runners.families.text_classifier.fit", _fake_fit(calls))
    jobs = queued_jobs(4, "Shared router")
    # Every job delivered twice at the same moment: one claim wins per job.
    results, errors = run_threads(len(jobs) * 2, lambda i: finetune_execute(job_id=jobs[i // 2]))
    assert errors == []
    assert len(calls) == len(jobs)  # no job ran twice
    assert sum(r is None for r in results) == len(jobs)
    done = FineTuneJob.objects.filter(pk__in=jobs)
    assert {j.status for j in done} == {JobStatus.SUCCEEDED}, [(j.pk, j.status, j.error) for j in done]
    model = RegisteredModel.objects.get(slug="shared-router")  # created once, by whichever job came first
    versions = ModelVersion.objects.filter(registered_model=model)
    assert sorted(v.version for v in versions) == list(range(1, len(jobs) + 1))
    assert sorted(j.result_version_id or 0 for j in done) == sorted(v.pk for v in versions)


def test_registration_survives_a_transient_database_error(
    queued_jobs: Callable[[int, str], list[int]], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """The database fails inside the registration transaction (after the model
    and version rows were written): the worker retries, the rolled-back rows
    are written once, and the trained result is not lost."""
    settings.DB_RETRY_FIRST_DELAY_S = 0.01
    calls: list[int] = []
    monkeypatch.setattr("runners.families.text_classifier.fit", _fake_fit(calls))
    from catalog.services import finetune

    real_metrics_record = finetune.metrics_record
    failures = {"left": 2}

    def flaky_metrics_record(**kw: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("database is locked")
        real_metrics_record(**kw)

    monkeypatch.setattr(finetune, "metrics_record", flaky_metrics_record)
    (job_id,) = queued_jobs(1, "Flaky router")
    job = finetune_execute(job_id=job_id)
    assert job is not None
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert failures["left"] == 0
    assert len(calls) == 1
    assert RegisteredModel.objects.filter(slug="flaky-router").count() == 1
    assert ModelVersion.objects.filter(registered_model__slug="flaky-router").count() == 1
    assert job.result_version is not None
    assert job.result_version.metrics.count() == 2


def test_db_retry_gives_up_after_its_attempts_and_ignores_other_errors(settings: Any) -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def always_locked() -> None:
        calls.append(1)
        raise OperationalError("database is locked")

    with pytest.raises(OperationalError):
        db_retry(always_locked, what="test", attempts=4, first_delay_s=1.0, sleep=sleeps.append)
    assert len(calls) == 4
    assert len(sleeps) == 3
    assert sleeps[0] < sleeps[1] < sleeps[2]

    def broken() -> None:
        calls.append(1)
        raise IntegrityError("duplicate key")

    calls.clear()
    with pytest.raises(IntegrityError):
        db_retry(broken, what="test", attempts=4, sleep=sleeps.append)
    assert len(calls) == 1  # not transient unless the caller says so
    calls.clear()
    with pytest.raises(IntegrityError):
        db_retry(broken, what="test", attempts=3, retry_on=(IntegrityError,), sleep=lambda s: None)
    assert len(calls) == 3
