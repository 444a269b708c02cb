"""``GET`` lists of a user's datasets, fine-tune jobs and evaluations, paginated
like ``GET /api/v1/models/`` (``count``, ``page``, ``pages``, ``next``,
``previous``, ``results``) and filtered by ``team`` and ``status``; and
``POST /api/v1/evaluations/`` to start an evaluation."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api.errors import COMMON_ERRORS, Unprocessable, error_responses
from catalog.api.fields import StrictStringsMixin
from catalog.api.serializers import JobSerializer
from catalog.models import JobStatus
from catalog.selectors.jobs import jobs_visible
from evaluations.models import EntryStatus, Evaluation, EvaluationStatus
from evaluations.selectors import can_evaluate, datasets_visible, entries_visible, evaluations_visible, versions_pick
from evaluations.services import evaluation_request, max_models

MAX_PAGE_SIZE = 100


class ListParams(serializers.Serializer):  # type: ignore[type-arg]
    team = serializers.SlugField(required=False, help_text="Only this team's (one of yours).")
    page = serializers.IntegerField(required=False, default=1, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)


class JobListParams(ListParams):
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)


class EvaluationListParams(ListParams):
    status = serializers.ChoiceField(choices=EvaluationStatus.choices, required=False)


class PageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class DatasetItemSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField(help_text="Dataset version id.")
    dataset = serializers.CharField()
    team = serializers.CharField(help_text="Team slug.")
    sha256 = serializers.CharField()
    rows = serializers.IntegerField()
    labels = serializers.ListField(child=serializers.CharField())
    label_counts = serializers.DictField(child=serializers.IntegerField())
    created_at = serializers.DateTimeField()
    leaderboard_url = serializers.URLField()


class DatasetPageSerializer(PageSerializer):
    results = DatasetItemSerializer(many=True)


class JobPageSerializer(PageSerializer):
    results = JobSerializer(many=True)


class EvaluationEntrySerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = serializers.CharField(help_text="Model slug.")
    version = serializers.IntegerField()
    status = serializers.ChoiceField(choices=EntryStatus.choices)
    runner = serializers.CharField(help_text="The variant used (e.g. onnx-int8), or torch.")
    macro_precision = serializers.FloatField(allow_null=True)
    macro_recall = serializers.FloatField(allow_null=True)
    macro_f1 = serializers.FloatField(allow_null=True)
    coverage = serializers.FloatField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True, help_text="Mean milliseconds per input.")
    error = serializers.CharField()


class EvaluationSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    url = serializers.URLField()
    leaderboard_url = serializers.URLField()
    team = serializers.CharField()
    dataset = serializers.IntegerField(help_text="Dataset version id.")
    status = serializers.ChoiceField(choices=EvaluationStatus.choices)
    progress = serializers.FloatField()
    threshold = serializers.FloatField()
    error = serializers.CharField()
    entries = EvaluationEntrySerializer(many=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class EvaluationPageSerializer(PageSerializer):
    results = EvaluationSerializer(many=True)


class EvaluationCreateSerializer(StrictStringsMixin, serializers.Serializer):  # type: ignore[type-arg]
    dataset = serializers.IntegerField(help_text="A dataset version id of one of your teams.")
    models = serializers.ListField(
        child=serializers.SlugField(), min_length=1, help_text="Slugs of visible text classifiers."
    )
    threshold = serializers.FloatField(required=False, default=0.9, min_value=0.0, max_value=1.0)
    label_mappings = serializers.DictField(
        child=serializers.DictField(child=serializers.CharField()),
        required=False,
        help_text="Per model slug: {dataset label: model label}.",
    )


def _page_url(request: Request, page: int) -> str:
    query = request.query_params.copy()
    query["page"] = str(page)
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


def _params(request: Request, cls: type[ListParams]) -> dict[str, Any]:
    # A plain dict: with a QueryDict, DRF takes an empty ``team=`` for "absent".
    params = cls(data=request.query_params.dict())
    params.is_valid(raise_exception=True)
    return dict(params.validated_data)


def paginate(request: Request, qs: QuerySet[Any], params: dict[str, Any], body: Any) -> Response:
    size = params.get("page_size") or int(getattr(settings, "CATALOG_PAGE_SIZE", 20))
    page = params["page"]
    total = qs.count()
    last_page = max(1, -(-total // size))
    if page > last_page:
        raise NotFound(f"Page {page} is past the last page ({last_page}).", code="page_not_found")
    rows = list(qs[(page - 1) * size : page * size])
    return Response(
        {
            "count": total,
            "page": page,
            "pages": last_page,
            "next": _page_url(request, page + 1) if page < last_page else None,
            "previous": _page_url(request, page - 1) if page > 1 else None,
            "results": [body(r) for r in rows],
        }
    )


LIST_ERRORS = error_responses(400, 401, 403, 404, *COMMON_ERRORS)

DATASETS_LIST_SCHEMA: dict[str, Any] = {
    "operation_id": "datasets_list",
    "parameters": [ListParams],
    "responses": {200: DatasetPageSerializer, **LIST_ERRORS},
    "description": "Your teams' dataset versions, newest first.",
}


def datasets_list(request: Request) -> Response:
    params = _params(request, ListParams)
    qs = datasets_visible(user=request.user)
    if params.get("team"):
        qs = qs.filter(dataset__team__slug=params["team"])

    def body(v: Any) -> dict[str, Any]:
        return {
            "id": v.pk,
            "dataset": v.dataset.name,
            "team": v.dataset.team.slug,
            "sha256": v.sha256,
            "rows": v.rows,
            "labels": v.labels,
            "label_counts": v.label_counts,
            "created_at": v.created_at,
            "leaderboard_url": request.build_absolute_uri(reverse("catalog:dataset_leaderboard", args=[v.pk])),
        }

    return paginate(request, qs, params, lambda v: DatasetItemSerializer(body(v)).data)


JOBS_LIST_SCHEMA: dict[str, Any] = {
    "operation_id": "finetune_jobs_list",
    "parameters": [JobListParams],
    "responses": {200: JobPageSerializer, **LIST_ERRORS},
    "description": "Your teams' fine-tune jobs, newest first (each as `GET /finetune-jobs/{id}/` with a short log).",
}


def finetune_jobs_list(request: Request) -> Response:
    from catalog.api.finetune import job_body

    params = _params(request, JobListParams)
    qs = jobs_visible(user=request.user).order_by("-created_at", "-id")
    if params.get("team"):
        qs = qs.filter(team__slug=params["team"])
    if params.get("status"):
        qs = qs.filter(status=params["status"])
    return paginate(request, qs, params, lambda j: JobSerializer(job_body(j, request, log_lines=5)).data)


def evaluation_body(request: Request, evaluation: Evaluation) -> dict[str, Any]:
    return {
        "id": evaluation.pk,
        "url": request.build_absolute_uri(reverse("catalog:evaluation_detail", args=[evaluation.pk])),
        "leaderboard_url": request.build_absolute_uri(
            reverse("catalog:dataset_leaderboard", args=[evaluation.dataset_version_id])
        ),
        "team": evaluation.team.slug,
        "dataset": evaluation.dataset_version_id,
        "status": evaluation.status,
        "progress": evaluation.progress,
        "threshold": evaluation.threshold,
        "error": evaluation.error,
        "entries": [
            {
                "model": e.version.registered_model.slug,
                "version": e.version.version,
                "status": e.status,
                "runner": e.runner,
                "macro_precision": e.macro_precision,
                "macro_recall": e.macro_recall,
                "macro_f1": e.macro_f1,
                "coverage": e.coverage,
                "latency_ms": e.latency_ms,
                "error": e.error,
            }
            for e in entries_visible(user=request.user, evaluation=evaluation)
        ],
        "created_at": evaluation.created_at,
        "finished_at": evaluation.finished_at,
    }


@extend_schema(
    methods=["GET"],
    operation_id="evaluations_list",
    parameters=[EvaluationListParams],
    responses={200: EvaluationPageSerializer, **LIST_ERRORS},
    description="Your teams' evaluations, newest first.",
)
@extend_schema(
    methods=["POST"],
    operation_id="evaluations_create",
    request=EvaluationCreateSerializer,
    responses={
        201: OpenApiResponse(EvaluationSerializer, description="Queued; poll `url` or this list."),
        **error_responses(400, 401, 403, 415, 422, *COMMON_ERRORS),
    },
    description="Evaluate up to `EVALUATION_MAX_MODELS` visible text classifiers on one of your team's "
    "datasets, on a worker. Results become metrics of each version on that dataset version.",
)
@api_view(["GET", "POST"])
@permission_classes([IsAuthenticated])
def evaluations(request: Request) -> Response:
    if request.method == "GET":
        params = _params(request, EvaluationListParams)
        qs = evaluations_visible(user=request.user)
        if params.get("team"):
            qs = qs.filter(team__slug=params["team"])
        if params.get("status"):
            qs = qs.filter(status=params["status"])
        return paginate(request, qs, params, lambda e: EvaluationSerializer(evaluation_body(request, e)).data)
    if not can_evaluate(user=request.user):
        raise PermissionDenied("Starting an evaluation needs the member role in a team; viewers only look.")
    form = EvaluationCreateSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    dataset = datasets_visible(user=request.user).filter(pk=data["dataset"]).first()
    if dataset is None:
        raise Unprocessable({"dataset": [f"No dataset version {data['dataset']} in your teams."]})
    if len(data["models"]) > max_models():
        raise Unprocessable({"models": [f"At most {max_models()} models per evaluation."]})
    versions, missing = versions_pick(user=request.user, slugs=data["models"])
    if missing:
        raise Unprocessable({"models": [f"No visible text classifier {s!r}." for s in missing]})
    mappings_by_slug: dict[str, dict[str, str]] = data.get("label_mappings", {})
    try:
        evaluation = evaluation_request(
            team=dataset.dataset.team,
            dataset_version=dataset,
            versions=versions,
            user=request.user,
            threshold=data["threshold"],
            label_mappings={v.pk: mappings_by_slug.get(v.registered_model.slug, {}) for v in versions},
        )
    except DjangoValidationError as exc:
        raise Unprocessable(exc.message_dict) from exc
    return Response(EvaluationSerializer(evaluation_body(request, evaluation)).data, status=status.HTTP_201_CREATED)
