"""The fine-tune job API shows each recipe trial with every field the recipe
records (epochs planned, the kept trial's check against epoch 0, the epoch a
kept baseline beat), the baseline's C search and the inner validation size;
the OpenAPI schema describes them."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from catalog.models import FineTuneJob, JobStatus, ModelVersion
from catalog.services.finetune import finetune_execute
from tests.catalog.api.test_finetune_api import alice, upload

pytestmark = pytest.mark.django_db

__all__ = ["alice"]  # the fine-tune API tests' token client, used as a fixture here


def _dataset(client: APIClient, data: bytes) -> int:
    response = upload(client, data)
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def test_every_field_the_recipe_records_for_a_trial_is_in_the_api(
    alice: APIClient, tiny_encoder: ModelVersion, tickets_csv: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    """A real default-recipe job (tiny encoder): what the job recorded is what the API answers."""
    dataset = _dataset(alice, tickets_csv)
    with django_capture_on_commit_callbacks():
        response = alice.post(
            "/api/v1/finetune-jobs/",
            {
                "base": "tiny-encoder",
                "dataset": dataset,
                "name": "Ticket router",
                "hyperparameters": {"recipe": "default", "time_budget_s": 60},
            },
            format="json",
        )
    assert response.status_code == 201, response.json()
    done = finetune_execute(job_id=response.json()["id"])
    assert done is not None
    assert done.status == JobStatus.SUCCEEDED, done.error
    recorded = done.evaluation["trials"]
    assert recorded, "the default recipe records its trial"

    body = alice.get(f"/api/v1/finetune-jobs/{done.pk}/").json()
    assert len(body["trials"]) == len(recorded)
    for trial, kept in zip(body["trials"], recorded, strict=True):
        assert set(kept) <= set(trial), f"not in the API: {set(kept) - set(trial)}"
        for name, value in kept.items():
            assert trial[name] == value, name
        assert trial["epochs_planned"] >= 1
    [chosen] = [t for t in body["trials"] if t["chosen"]]
    check = chosen["baseline_check"]
    assert check is not None
    assert set(check) == {
        "epoch_0_macro_f1",
        "fine_tune_macro_f1",
        "rows_only_baseline_right",
        "rows_only_fine_tune_right",
        "sign_test_p_value",
        "baseline_kept",
    }
    if check["baseline_kept"]:
        assert chosen["best_epoch"] == 0
        assert chosen["best_fine_tuned_epoch"] >= 1
    else:
        assert chosen["best_fine_tuned_epoch"] is None
    assert body["inner_validation_rows"] == done.evaluation["inner_validation_rows"] > 0
    assert body["baseline"]["validation_macro_f1_by_C"] == done.evaluation["baseline"]["validation_macro_f1_by_C"]
    assert body["baseline"]["validation_macro_f1_by_C"]


def test_fields_a_trial_did_not_record_are_null(
    alice: APIClient, tiny_encoder: ModelVersion, make_team: Any, tickets_csv: bytes
) -> None:
    """A trial not weighed against epoch 0, or a job recorded before these fields, reads null (not missing)."""
    from catalog.api.finetune import job_body
    from catalog.api.serializers import JobSerializer
    from catalog.models import DatasetVersion

    dataset = DatasetVersion.objects.get(pk=_dataset(alice, tickets_csv))
    trial = {
        "name": "top-2",
        "hyperparameters": {"unfreeze_layers": 2, "learning_rate": 1e-4},
        "validation_macro_f1": 0.81,
        "best_epoch": 0,
        "best_fine_tuned_epoch": 3,
        "epochs_run": 4,
        "epochs_planned": 6,
        "stopped_by": "early stopping",
        "validation_history": [[0, 0.81], [1, 0.7], [2, 0.75], [3, 0.78], [4, 0.77]],
        "loss_history": [[1, 1.5], [2, 1.2]],
        "seconds": 12.5,
        "chosen": True,
        "baseline_check": {
            "epoch_0_macro_f1": 0.81,
            "fine_tune_macro_f1": 0.78,
            "rows_only_baseline_right": 3,
            "rows_only_fine_tune_right": 1,
            "sign_test_p_value": 0.3125,
            "baseline_kept": True,
        },
    }
    older = {k: v for k, v in trial.items() if k not in ("epochs_planned", "baseline_check", "best_fine_tuned_epoch")}
    job = FineTuneJob.objects.create(
        team=make_team("Team A"),
        base_version=tiny_encoder,
        dataset_version=dataset,
        target_name="Router",
        status=JobStatus.SUCCEEDED,
        evaluation={"recipe": "auto", "trials": [trial, {**older, "name": "top-6", "chosen": False}]},
    )
    body = alice.get(f"/api/v1/finetune-jobs/{job.pk}/").json()
    kept, other = body["trials"]
    assert kept["baseline_check"] == trial["baseline_check"]
    assert (kept["best_epoch"], kept["best_fine_tuned_epoch"], kept["epochs_planned"]) == (0, 3, 6)
    assert (other["baseline_check"], other["best_fine_tuned_epoch"], other["epochs_planned"]) == (None, None, None)
    assert body["inner_validation_rows"] == 0
    assert body["baseline"] is None
    # The list route answers each job as the detail does (trial fields included).
    [listed] = [j for j in alice.get("/api/v1/finetune-jobs/").json()["results"] if j["id"] == job.pk]
    assert listed["trials"] == body["trials"]
    assert listed["inner_validation_rows"] == body["inner_validation_rows"]
    # The body is exactly what the documented serializer describes.
    from rest_framework.test import APIRequestFactory

    request = APIRequestFactory().get("/")
    answer = job_body(job, request)  # type: ignore[arg-type]
    assert JobSerializer(answer).data["trials"] == answer["trials"]


def test_the_schema_documents_the_trial_fields() -> None:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    detail = schema["paths"]["/api/v1/finetune-jobs/{job_id}/"]["get"]["responses"]["200"]["content"]
    ref = detail["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    job = components[ref]
    assert "inner_validation_rows" in job["properties"]
    trial = components[job["properties"]["trials"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert {"epochs_planned", "baseline_check", "best_fine_tuned_epoch", "stopped_by", "chosen"} <= set(
        trial["properties"]
    )
    assert trial["properties"]["epochs_planned"]["nullable"] is True
    check = trial["properties"]["baseline_check"]
    check_ref = (check.get("allOf") or check.get("oneOf"))[0]["$ref"].rsplit("/", 1)[1]
    assert "sign_test_p_value" in components[check_ref]["properties"]
    baseline = job["properties"]["baseline"]
    baseline_ref = (baseline.get("allOf") or baseline.get("oneOf"))[0]["$ref"].rsplit("/", 1)[1]
    assert "validation_macro_f1_by_C" in components[baseline_ref]["properties"]
