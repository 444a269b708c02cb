"""Datasets and fine-tune jobs for automation tooling (token auth)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view, parser_classes, permission_classes
from rest_framework.exceptions import NotFound
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api import lists
from catalog.api.errors import COMMON_ERRORS, ApiError, DatasetInvalidSerializer, Unprocessable, error_responses
from catalog.api.fields import StrictStringsMixin
from catalog.api.serializers import (
    DatasetSerializer,
    JobBaselineSerializer,
    JobCreatedSerializer,
    JobSerializer,
    JobTrialSerializer,
)
from catalog.models import DatasetVersion, Domain, FineTuneJob, Team, Visibility
from catalog.selectors.jobs import base_version_resolve, jobs_visible, teams_of
from catalog.services.datasets import dataset_upload
from catalog.services.finetune import finetune_request, job_cancel
from runners.datasets import DatasetInvalid
from runners.families.text_classifier import RECIPES, FitParams


def team_for(user: Any, slug: str | None) -> Team:
    teams = teams_of(user)
    if slug:
        team = teams.filter(slug=slug).first()
        if team is None:
            raise Unprocessable({"team": [f"You are not a member of a team {slug!r}."]})
        return team
    mine = list(teams[:2])
    if len(mine) != 1:
        raise Unprocessable(
            {"team": ["Name the team (you belong to none or to several)." if mine else "You belong to no team."]}
        )
    return mine[0]


class DatasetUploadSerializer(serializers.Serializer):  # type: ignore[type-arg]
    file = serializers.FileField(allow_empty_file=True)  # an empty file is refused with the others (422)
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    text_column = serializers.CharField(
        required=False, allow_blank=True, default="text", max_length=100, help_text="blank: `text`"
    )
    label_column = serializers.CharField(
        required=False, allow_blank=True, default="label", max_length=100, help_text="blank: `label`"
    )
    team = serializers.SlugField(required=False)
    domain = serializers.CharField(required=False, allow_blank=True, max_length=255)


def dataset_body(version: DatasetVersion, created: bool) -> dict[str, Any]:
    return {
        "id": version.pk,
        "dataset": version.dataset.name,
        "sha256": version.sha256,
        "rows": version.rows,
        "labels": version.labels,
        "label_counts": version.label_counts,
        "duplicates_dropped": version.report.get("duplicates_dropped", 0),
        "created": created,
    }


@extend_schema(
    request={"multipart/form-data": DatasetUploadSerializer},
    responses={
        201: OpenApiResponse(DatasetSerializer, description="A new dataset version was stored."),
        200: OpenApiResponse(
            DatasetSerializer,
            description="The same file was uploaded to this dataset before: that version, `created: false` "
            "(uploads are idempotent by sha256).",
        ),
        422: OpenApiResponse(
            DatasetInvalidSerializer,
            description="The file's content is not valid (every problem under `errors.file`, each with its "
            "row and column under `issues`), or the team or domain named does not exist.",
        ),
        **error_responses(400, 401, 403, 413, 415, *COMMON_ERRORS),
    },
    description="Upload a labelled text dataset (CSV or JSONL) for fine-tuning.",
    methods=["POST"],
)
@extend_schema(methods=["GET"], **lists.DATASETS_LIST_SCHEMA)
@api_view(["GET", "POST"])
@permission_classes([IsAuthenticated])
@parser_classes([MultiPartParser])
def datasets_create(request: Request) -> Response:
    if request.method == "GET":  # the list (catalog.api.lists)
        return lists.datasets_list(request)
    form = DatasetUploadSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    team = team_for(request.user, data.get("team"))
    from catalog.roles import Role, role_require

    # Datasets are uploaded to fine-tune or evaluate: the member role, like those.
    role_require(request.user, team, Role.MEMBER, "upload a dataset")
    domain = None
    if data.get("domain"):
        domain = Domain.objects.filter(path=data["domain"]).first()
        if domain is None:
            raise Unprocessable({"domain": [f"No domain has the path {data['domain']!r}."]})
    upload = data["file"]
    try:
        version, created = dataset_upload(
            team=team,
            source=upload,
            file_name=upload.name,
            name=data.get("name", ""),
            text_column=data["text_column"] or "text",
            label_column=data["label_column"] or "label",
            domain=domain,
        )
    except DatasetInvalid as exc:
        n = len(exc.issues)
        raise ApiError(
            422,
            f"The dataset is not valid ({n} problem{'s' if n != 1 else ''}): {exc.issues[0]}"
            if n
            else "The dataset is not valid.",
            "unprocessable",
            errors={"file": [str(i) for i in exc.issues]},
            issues=[i.as_dict() for i in exc.issues],
        ) from exc
    return Response(dataset_body(version, created), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


def _hyperparameter_field(name: str, kind: str) -> serializers.Field:  # type: ignore[type-arg]
    """A bounded number for each of FitParams' numeric knobs; the recipe is a choice."""
    default = getattr(FitParams, name)
    if name == "recipe":
        return serializers.ChoiceField(
            choices=list(RECIPES),
            required=False,
            help_text="`default` (the parameters are chosen for the data and the time budget), `auto` (a small "
            "search within the budget) or `manual` (the knobs given). Without it: `manual` when a knob is "
            "given, else `default`; a knob with `default`/`auto` is refused (422).",
        )
    if name not in FitParams.BOUNDS:
        return serializers.CharField(required=False, max_length=100, help_text=f"default {default}")
    low, high = FitParams.BOUNDS[name]
    if kind in ("int", "builtins.int"):
        return serializers.IntegerField(
            required=False, min_value=int(low), max_value=int(high), help_text=f"default {default}"
        )
    return serializers.FloatField(required=False, min_value=low, max_value=high, help_text=f"default {default}")


class HyperparametersSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The text-classifier's training parameters (each optional, with its bounds).
    Every problem is reported, each under `hyperparameters.<name>`; unknown names are refused."""

    def get_fields(self) -> dict[str, serializers.Field]:  # type: ignore[type-arg]
        return {f.name: _hyperparameter_field(f.name, str(f.type)) for f in fields(FitParams)}

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Give the hyperparameters as an object."]})
        known = set(self.fields)
        errors: dict[str, Any] = {
            name: [f"Unknown hyperparameter; use one of {', '.join(sorted(known))}."]
            for name in data
            if name not in known
        }
        try:
            values = cast(dict[str, Any], super().to_internal_value({k: v for k, v in data.items() if k in known}))
        except serializers.ValidationError as exc:
            errors.update(cast(dict[str, Any], exc.detail))
            values = {}
        if errors:
            raise serializers.ValidationError(errors)
        return values


class FineTuneRequestSerializer(StrictStringsMixin, serializers.Serializer):  # type: ignore[type-arg]
    base = serializers.CharField(help_text="model slug (its production version) or slug@version")
    dataset = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, help_text="dataset version id from POST /datasets/"
    )
    name = serializers.CharField(max_length=200, help_text="name of the new (or your team's existing) model")
    hyperparameters = HyperparametersSerializer(required=False, default=dict)
    min_precision = serializers.FloatField(
        required=False, default=0.0, min_value=0.0, max_value=1.0, help_text="Quality gate on macro precision (0–1)."
    )
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False, default=Visibility.INTERNAL)
    team = serializers.SlugField(required=False)


def _team_job_or_404(request: Request, job_id: int) -> FineTuneJob:
    job = jobs_visible(user=request.user).filter(pk=job_id).first()
    if job is None:
        raise NotFound("No fine-tune job with that id in your teams.")
    return job


LOG_LINES_DEFAULT = 200
LOG_LINES_MAX = 5000


def job_url(request: Request, job: FineTuneJob) -> str:
    return request.build_absolute_uri(f"/api/v1/finetune-jobs/{job.pk}/")


def log_tail(log: str, lines: int) -> tuple[str, int, bool]:
    """The last ``lines`` lines of ``log``, how many it has, and whether some were left out."""
    all_lines = log.splitlines(keepends=True)
    tail = all_lines[-lines:] if lines else []
    return "".join(tail), len(all_lines), len(tail) < len(all_lines)


class JobParams(serializers.Serializer):  # type: ignore[type-arg]
    log_lines = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=LOG_LINES_MAX,
        default=LOG_LINES_DEFAULT,
        help_text=f"How many of the log's last lines to return (0–{LOG_LINES_MAX}).",
    )


TRIAL_FIELDS = tuple(JobTrialSerializer().fields)
BASELINE_FIELDS = tuple(JobBaselineSerializer().fields)


def trial_body(trial: dict[str, Any]) -> dict[str, Any]:
    """A recorded trial as the API documents it (every field; null where the recipe did not record it)."""
    return {name: trial.get(name) for name in TRIAL_FIELDS}


def baseline_body(baseline: dict[str, Any] | None) -> dict[str, Any] | None:
    if not baseline:
        return None
    return {name: baseline.get(name, {} if name == "validation_macro_f1_by_C" else None) for name in BASELINE_FIELDS}


def job_quality_body(job: FineTuneJob) -> dict[str, Any]:
    """The frozen-embedding baseline, the comparison with it and the recipe trials (empty until the job ends)."""
    evaluation = job.evaluation or {}
    return {
        "recipe": evaluation.get("recipe", job.hyperparameters.get("recipe", "manual")),
        "baseline": baseline_body(evaluation.get("baseline")),
        "comparison": evaluation.get("comparison") or None,
        "trials": [trial_body(t) for t in evaluation.get("trials", [])],
        "inner_validation_rows": int(evaluation.get("inner_validation_rows") or 0),
    }


def job_body(job: FineTuneJob, request: Request, log_lines: int = LOG_LINES_DEFAULT) -> dict[str, Any]:
    log, total, truncated = log_tail(job.log, log_lines)
    result = None
    if job.result_version_id and job.result_version is not None:
        result = {
            "model": job.result_version.registered_model.slug,
            "version": job.result_version.version,
            "status": job.result_version.status,
        }
    return {
        "id": job.pk,
        "url": job_url(request, job),
        "status": job.status,
        "phase": job.phase,
        "progress": round(job.progress, 4),
        "attempts": job.attempts,
        "base": f"{job.base_version.registered_model.slug}@{job.base_version.version}",
        "dataset": job.dataset_version_id,
        "hyperparameters": job.hyperparameters,
        "min_precision": job.min_precision,
        "metrics": job.metrics,
        **job_quality_body(job),
        "error": job.error,
        "result": result,
        "loss_history": job.loss_history,
        "log": log,
        "log_total_lines": total,
        "log_truncated": truncated,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


@extend_schema(
    request=FineTuneRequestSerializer,
    responses={
        201: OpenApiResponse(JobCreatedSerializer, description="The job is queued."),
        **error_responses(400, 401, 403, 415, 422, *COMMON_ERRORS),
    },
    description="Fine-tune a text model of the catalogue on one of your team's datasets. The job is "
    "queued for a worker; poll its `url`.",
    methods=["POST"],
)
@extend_schema(methods=["GET"], **lists.JOBS_LIST_SCHEMA)
@api_view(["GET", "POST"])
@permission_classes([IsAuthenticated])
@parser_classes([JSONParser])
def finetune_jobs_create(request: Request) -> Response:
    if request.method == "GET":  # the list (catalog.api.lists)
        return lists.finetune_jobs_list(request)
    form = FineTuneRequestSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    team = team_for(request.user, data.get("team"))
    errors: dict[str, list[str]] = {}
    base = base_version_resolve(user=request.user, ref=data["base"])
    if base is None:
        errors["base"] = [f"No model version {data['base']!r} is visible to you."]
    dataset = DatasetVersion.objects.filter(pk=data["dataset"], dataset__team__in=teams_of(request.user)).first()
    if dataset is None:
        errors["dataset"] = [f"No dataset version {data['dataset']} of your teams."]
    if errors or base is None or dataset is None:
        raise Unprocessable(errors)
    try:
        with transaction.atomic():
            job = finetune_request(
                team=team,
                base_version=base,
                dataset_version=dataset,
                name=data["name"],
                hyperparameters=data["hyperparameters"],
                min_precision=data["min_precision"],
                visibility=data["visibility"],
                user=request.user,
            )
    except DjangoValidationError as exc:
        raise Unprocessable(exc.message_dict) from exc
    url = job_url(request, job)
    return Response(
        {"id": job.pk, "status": job.status, "url": url}, status=status.HTTP_201_CREATED, headers={"Location": url}
    )


@extend_schema(
    parameters=[JobParams],
    responses={200: JobSerializer, **error_responses(400, 401, 403, 404, *COMMON_ERRORS)},
    description="A job of one of your teams: status, progress, metrics, result and the tail of its log.",
)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def finetune_job_detail(request: Request, job_id: int) -> Response:
    params = JobParams(data=request.query_params.dict())  # `log_lines=` is not a number (see resolve)
    params.is_valid(raise_exception=True)
    return Response(job_body(_team_job_or_404(request, job_id), request, params.validated_data["log_lines"]))


@extend_schema(
    request=None,
    responses={200: JobSerializer, **error_responses(401, 403, 404, *COMMON_ERRORS)},
    description="Cancel a job of one of your teams (a finished job is answered as it is).",
)
@api_view(["POST"])
@permission_classes([IsAuthenticated])
def finetune_job_cancel(request: Request, job_id: int) -> Response:
    return Response(job_body(job_cancel(job=_team_job_or_404(request, job_id), user=request.user), request))
