"""Fine-tune form and the live job page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from catalog.forms import FineTuneForm
from catalog.selectors.jobs import base_version_resolve, finetunable_models, jobs_visible, loss_curve, teams_of
from catalog.services.datasets import dataset_upload
from catalog.services.finetune import finetune_request, job_cancel
from runners.datasets import DatasetInvalid


@login_required
@require_http_methods(["GET", "POST"])
def finetune_new(request: HttpRequest) -> HttpResponse:
    choices = [
        (m.slug, f"{m.name} (v{m.latest_version.version}, {m.latest_version.family})")
        for m in finetunable_models(user=request.user)
        if m.latest_version
    ]
    teams = list(teams_of(request.user))
    if request.method == "POST":
        form = FineTuneForm(request.POST, request.FILES, base_choices=choices)
        if not teams:
            form.add_error(None, "You belong to no team; ask an administrator to add you to one.")
        elif form.is_valid():
            data = form.cleaned_data
            team = teams[0]
            base = base_version_resolve(user=request.user, ref=data["base"])
            if base is None:
                form.add_error("base", "That model is no longer visible to you.")
                return render(request, "catalog/finetune_new.html", {"form": form, "teams": teams})
            try:
                version, _ = dataset_upload(
                    team=team,
                    source=data["file"],
                    file_name=data["file"].name,
                    name=data["dataset_name"],
                    text_column=data["text_column"],
                    label_column=data["label_column"],
                    domain=data["domain"],
                )
                with transaction.atomic():
                    job = finetune_request(
                        team=team,
                        base_version=base,
                        dataset_version=version,
                        name=data["name"],
                        hyperparameters=form.hyperparameters(),
                        min_precision=data["min_precision"],
                        visibility=data["visibility"],
                        user=request.user,
                    )
                return redirect(job)
            except DatasetInvalid as exc:
                for issue in exc.issues:
                    form.add_error("file", str(issue))
            except ValidationError as exc:
                for field, messages in exc.message_dict.items():
                    target = field if field in form.fields else None
                    for message in messages:
                        form.add_error(target, message)
    else:
        form = FineTuneForm(initial={"base": request.GET.get("base", "")}, base_choices=choices)
    return render(request, "catalog/finetune_new.html", {"form": form, "teams": teams})


def _job_context(request: HttpRequest, job_id: int) -> dict[str, object]:
    job = jobs_visible(user=request.user).filter(pk=job_id).first()
    if job is None:
        raise Http404("No fine-tune job with that id in your teams.")
    evaluation = job.evaluation or {}
    labels = evaluation.get("labels", [])
    confusion = [{"label": labels[i], "cells": row} for i, row in enumerate(evaluation.get("confusion", []))]
    return {
        "job": job,
        "curve": loss_curve(job.loss_history),
        "per_class": evaluation.get("per_class", []),
        "confusion": confusion,
        "labels": labels,
        "percent": round(job.progress * 100, 1),
    }


@login_required
@require_http_methods(["GET"])
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    context = _job_context(request, job_id)
    if request.htmx:  # type: ignore[attr-defined]
        response = render(request, "catalog/job_detail.html#live", context)
        if context["job"].is_terminal:  # type: ignore[attr-defined]
            response.status_code = 286  # htmx: stop polling
        return response
    return render(request, "catalog/job_detail.html", context)


@login_required
@require_POST
def job_cancel_view(request: HttpRequest, job_id: int) -> HttpResponse:
    job = jobs_visible(user=request.user).filter(pk=job_id).first()
    if job is None:
        raise Http404("No fine-tune job with that id in your teams.")
    job_cancel(job=job)
    return redirect(job)
