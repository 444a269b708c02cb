"""Pages: start an evaluation, watch it, a dataset's leaderboard, my datasets, my jobs."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from catalog.models import JobStatus
from catalog.selectors.jobs import jobs_visible, teams_of
from catalog.views.finetune import login_required_htmx
from evaluations.models import EvaluationStatus
from evaluations.selectors import (
    bar_chart,
    can_evaluate,
    candidate_versions,
    datasets_visible,
    entries_visible,
    evaluations_visible,
    leaderboard,
    versions_pick,
)
from evaluations.services import evaluation_dataset_name, evaluation_request, label_cover, max_models


@login_required
@require_http_methods(["GET", "POST"])
def evaluation_new(request: HttpRequest) -> HttpResponse:
    datasets = list(datasets_visible(user=request.user)[:200])
    candidates = candidate_versions(user=request.user)
    errors: list[str] = []
    picked_dataset = request.POST.get("dataset_version") or request.GET.get("dataset_version", "")
    picked_models = request.POST.getlist("models")
    if request.method == "POST":
        if not can_evaluate(user=request.user):
            raise PermissionDenied("Starting an evaluation needs the member role in a team; viewers only look.")
        dataset = next((d for d in datasets if str(d.pk) == picked_dataset), None)
        versions, missing = versions_pick(user=request.user, slugs=picked_models)
        try:
            threshold = float(request.POST.get("threshold", "0.9") or 0.9)
        except ValueError:
            threshold = -1.0
        if dataset is None:
            errors.append("Pick one of your team's datasets.")
        if missing:
            errors.append(f"No classifier named {', '.join(missing[:5])} is visible to you.")
        if not errors and dataset is not None:
            try:
                evaluation = evaluation_request(
                    team=dataset.dataset.team,
                    dataset_version=dataset,
                    versions=versions,
                    user=request.user,
                    threshold=threshold,
                )
            except ValidationError as exc:
                errors += [m for ms in exc.message_dict.values() for m in ms]
            else:
                return redirect("catalog:evaluation_detail", evaluation.pk)
    chosen = next((d for d in datasets if str(d.pk) == picked_dataset), datasets[0] if datasets else None)
    rows = [
        {
            "version": v,
            "covers": chosen is not None
            and not label_cover(dataset_labels=list(chosen.labels), model_labels=v.labels, mapping={}),
        }
        for v in candidates
    ]
    return render(
        request,
        "evaluations/new.html",
        {
            "datasets": datasets,
            "chosen": chosen,
            "rows": rows,
            "picked": picked_models,
            "errors": errors,
            "max_models": max_models(),
        },
        status=400 if errors else 200,
    )


@login_required_htmx
@require_GET
def evaluation_detail(request: HttpRequest, evaluation_id: int) -> HttpResponse:
    evaluation = evaluations_visible(user=request.user).filter(pk=evaluation_id).first()
    if evaluation is None:
        if request.htmx:  # type: ignore[attr-defined]
            response = HttpResponse(status=286)
            response["HX-Refresh"] = "true"
            return response
        raise Http404("No evaluation with that id in your teams.")
    entries = sorted(
        entries_visible(user=request.user, evaluation=evaluation),
        key=lambda e: (e.macro_f1 is None, -(e.macro_f1 or 0.0), e.pk),
    )
    context = {"evaluation": evaluation, "entries": entries, "finished": evaluation.finished}
    if request.htmx:  # type: ignore[attr-defined]
        response = render(request, "evaluations/detail.html#live", context)
        if evaluation.finished:
            response.status_code = 286  # htmx: stop polling
        return response
    return render(request, "evaluations/detail.html", context)


@login_required
@require_GET
def dataset_leaderboard(request: HttpRequest, dataset_version_id: int) -> HttpResponse:
    dataset = datasets_visible(user=request.user).filter(pk=dataset_version_id).first()
    if dataset is None:
        raise Http404("No dataset with that id in your teams.")
    rows = leaderboard(user=request.user, dataset_version=dataset)
    running = evaluations_visible(user=request.user).filter(
        dataset_version=dataset, status__in=[EvaluationStatus.QUEUED, EvaluationStatus.RUNNING]
    )
    return render(
        request,
        "evaluations/leaderboard.html",
        {
            "dataset": dataset,
            "metric_dataset": evaluation_dataset_name(dataset),
            "rows": rows,
            "chart": bar_chart(rows),
            "running": list(running[:10]),
        },
    )


def _status_filter(request: HttpRequest, choices: list[str]) -> str:
    status = request.GET.get("status", "")
    return status if status in choices else ""


@login_required
@require_GET
def my_datasets(request: HttpRequest) -> HttpResponse:
    teams = list(teams_of(request.user).order_by("name"))
    team = request.GET.get("team", "")
    qs = datasets_visible(user=request.user)
    if team:
        qs = qs.filter(dataset__team__slug=team)
    evaluations = evaluations_visible(user=request.user)
    if team:
        evaluations = evaluations.filter(team__slug=team)
    status = _status_filter(request, list(EvaluationStatus.values))
    if status:
        evaluations = evaluations.filter(status=status)
    return render(
        request,
        "evaluations/my_datasets.html",
        {
            "datasets": list(qs[:200]),
            "evaluations": list(evaluations[:50]),
            "teams": teams,
            "team": team,
            "status": status,
            "statuses": EvaluationStatus.choices,
        },
    )


@login_required
@require_GET
def my_jobs(request: HttpRequest) -> HttpResponse:
    teams = list(teams_of(request.user).order_by("name"))
    team = request.GET.get("team", "")
    status = _status_filter(request, list(JobStatus.values))
    qs = jobs_visible(user=request.user).order_by("-created_at", "-id")
    if team:
        qs = qs.filter(team__slug=team)
    if status:
        qs = qs.filter(status=status)
    return render(
        request,
        "evaluations/my_jobs.html",
        {"jobs": list(qs[:200]), "teams": teams, "team": team, "status": status, "statuses": JobStatus.choices},
    )
