"""Datasets and fine-tune jobs for automation tooling (token auth)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view, parser_classes, permission_classes
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.models import DatasetVersion, Domain, FineTuneJob, Team
from catalog.selectors.jobs import base_version_resolve, jobs_visible, teams_of
from catalog.services.datasets import dataset_upload
from catalog.services.finetune import finetune_request, job_cancel
from runners.datasets import DatasetInvalid


def team_for(user: Any, slug: str | None) -> Team:
    teams = teams_of(user)
    if slug:
        team = teams.filter(slug=slug).first()
        if team is None:
            raise serializers.ValidationError({"team": [f"You are not a member of a team {slug!r}."]})
        return team
    mine = list(teams[:2])
    if len(mine) != 1:
        raise serializers.ValidationError(
            {"team": ["Name the team (you belong to none or to several)." if mine else "You belong to no team."]}
        )
    return mine[0]


class DatasetUploadSerializer(serializers.Serializer):  # type: ignore[type-arg]
    file = serializers.FileField()
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    text_column = serializers.CharField(required=False, default="text", max_length=100)
    label_column = serializers.CharField(required=False, default="label", max_length=100)
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


@extend_schema(request={"multipart/form-data": DatasetUploadSerializer}, responses={201: dict, 400: dict})
@api_view(["POST"])
@permission_classes([IsAuthenticated])
@parser_classes([MultiPartParser, FormParser])
def datasets_create(request: Request) -> Response:
    form = DatasetUploadSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    team = team_for(request.user, data.get("team"))
    domain = None
    if data.get("domain"):
        domain = Domain.objects.filter(path=data["domain"]).first()
        if domain is None:
            raise serializers.ValidationError({"domain": [f"No domain has the path {data['domain']!r}."]})
    upload = data["file"]
    try:
        version, created = dataset_upload(
            team=team,
            source=upload,
            file_name=upload.name,
            name=data.get("name", ""),
            text_column=data["text_column"],
            label_column=data["label_column"],
            domain=domain,
        )
    except DatasetInvalid as exc:
        return Response(
            {"detail": "The dataset is not valid.", "errors": [i.as_dict() for i in exc.issues]},
            status=status.HTTP_400_BAD_REQUEST,
        )
    return Response(dataset_body(version, created), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class FineTuneRequestSerializer(serializers.Serializer):  # type: ignore[type-arg]
    base = serializers.CharField(help_text="model slug (its production version) or slug@version")
    dataset = serializers.IntegerField(help_text="dataset version id from POST /datasets/")
    name = serializers.CharField(max_length=200, help_text="name of the new (or your team's existing) model")
    hyperparameters = serializers.DictField(required=False, default=dict)
    min_precision = serializers.FloatField(required=False, default=0.0, min_value=0.0, max_value=1.0)
    visibility = serializers.ChoiceField(choices=["internal", "private"], required=False, default="internal")
    team = serializers.SlugField(required=False)


def _team_job_or_404(request: Request, job_id: int) -> FineTuneJob:
    job = jobs_visible(user=request.user).filter(pk=job_id).first()
    if job is None:
        raise Http404("No fine-tune job with that id in your teams.")
    return job


def job_body(job: FineTuneJob) -> dict[str, Any]:
    result = None
    if job.result_version_id and job.result_version is not None:
        result = {
            "model": job.result_version.registered_model.slug,
            "version": job.result_version.version,
            "status": job.result_version.status,
        }
    return {
        "id": job.pk,
        "status": job.status,
        "phase": job.phase,
        "progress": round(job.progress, 4),
        "attempts": job.attempts,
        "base": f"{job.base_version.registered_model.slug}@{job.base_version.version}",
        "dataset": job.dataset_version_id,
        "hyperparameters": job.hyperparameters,
        "min_precision": job.min_precision,
        "metrics": job.metrics,
        "error": job.error,
        "result": result,
        "loss_history": job.loss_history,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


@extend_schema(request=FineTuneRequestSerializer, responses={201: dict, 400: dict})
@api_view(["POST"])
@permission_classes([IsAuthenticated])
@parser_classes([JSONParser])
def finetune_jobs_create(request: Request) -> Response:
    form = FineTuneRequestSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    team = team_for(request.user, data.get("team"))
    base = base_version_resolve(user=request.user, ref=data["base"])
    if base is None:
        raise serializers.ValidationError({"base": [f"No model version {data['base']!r} is visible to you."]})
    dataset = DatasetVersion.objects.filter(pk=data["dataset"], dataset__team__in=teams_of(request.user)).first()
    if dataset is None:
        raise serializers.ValidationError({"dataset": [f"No dataset version {data['dataset']} of your teams."]})
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
        raise serializers.ValidationError(exc.message_dict) from exc
    return Response(
        {"id": job.pk, "status": job.status, "url": f"/api/v1/finetune-jobs/{job.pk}/"}, status=status.HTTP_201_CREATED
    )


@extend_schema(responses={200: dict})
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def finetune_job_detail(request: Request, job_id: int) -> Response:
    return Response(job_body(_team_job_or_404(request, job_id)))


@extend_schema(request=None, responses={200: dict})
@api_view(["POST"])
@permission_classes([IsAuthenticated])
def finetune_job_cancel(request: Request, job_id: int) -> Response:
    return Response(job_body(job_cancel(job=_team_job_or_404(request, job_id))))
