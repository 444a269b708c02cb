"""Fine-tune form and the live job page."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.views.decorators.http import require_http_methods, require_POST

from catalog.forms import FineTuneForm
from catalog.models import DatasetVersion
from catalog.selectors.jobs import base_version_resolve, finetunable_models, jobs_visible, loss_curve, teams_of
from catalog.services.datasets import dataset_upload_then
from catalog.services.finetune import finetune_request, job_cancel
from runners.datasets import DatasetInvalid

CONFUSION_MAX_CLASSES = 20  # larger matrices show the most frequent classes + "other"


def login_required_htmx(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """``login_required`` that an htmx request understands: a poll whose session
    ended gets ``HX-Redirect`` to the login page (and status 286, which stops
    the polling) instead of a 302 that htmx would follow and swap the login
    page into the fragment."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated and request.htmx:  # type: ignore[attr-defined]
            page = request.headers.get("HX-Current-URL", "") or request.get_full_path()
            response = HttpResponse(status=286)
            login = resolve_url("login")
            response["HX-Redirect"] = f"{login}?{urlencode({'next': _local_path(page, request)})}"
            return response
        return login_required(view)(request, *args, **kwargs)

    return wrapper


def _local_path(url: str, request: HttpRequest) -> str:
    """The path part of this site's URL (never another host's)."""
    origin = request.build_absolute_uri("/").rstrip("/")
    return url[len(origin) :] if url.startswith(origin) else request.get_full_path()


FORM_FIELDS_KEPT = tuple(name for name in FineTuneForm.base_fields if name != "file")


@require_http_methods(["GET", "POST"])
def finetune_new(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        if request.method == "POST":
            return _session_ended(request)
        return redirect_to_login(request.get_full_path())
    choices = [
        (m.slug, f"{m.name} (v{m.latest_version.version}, {m.latest_version.family})")
        for m in finetunable_models(user=request.user)
        if m.latest_version
    ]
    teams = list(teams_of(request.user))
    options: dict[str, Any] = {
        "base_choices": choices,
        "teams": teams,
        "choose_team": request.user.is_superuser or len(teams) != 1,
    }
    if request.method != "POST":
        # Every field but the file can come from the query string: the login
        # page sends a user whose session ended back here with what they typed.
        initial = {k: request.GET[k] for k in FORM_FIELDS_KEPT if request.GET.get(k)}
        form = FineTuneForm(initial=initial, **options)
        return _form_page(request, form, teams)
    form = FineTuneForm(request.POST, request.FILES, **options)
    if not teams:
        form.add_error(None, "You belong to no team; ask an administrator to add you to one.")
        return _form_page(request, form, teams)
    if not form.is_valid():
        return _form_page(request, form, teams)
    data = form.cleaned_data
    base = base_version_resolve(user=request.user, ref=data["base"])
    if base is None:
        form.add_error("base", "That model is no longer visible to you.")
        return _form_page(request, form, teams)

    def start_job(version: DatasetVersion, created: bool) -> Any:
        return finetune_request(
            team=data["team"],
            base_version=base,
            dataset_version=version,
            name=data["name"],
            hyperparameters=form.hyperparameters(),
            min_precision=form.min_precision_fraction(),
            visibility=data["visibility"],
            user=request.user,
        )

    try:
        # One transaction: a refused job leaves no dataset behind.
        job = dataset_upload_then(
            team=data["team"],
            source=data["file"],
            file_name=data["file"].name,
            name=data["dataset_name"],
            text_column=data["text_column"],
            label_column=data["label_column"],
            domain=data["domain"],
            then=start_job,
        )
    except DatasetInvalid as exc:
        for issue in exc.issues:
            form.add_error("file", str(issue))
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            target = field if field in form.fields else None
            for message in messages:
                form.add_error(target, message)
    else:
        return redirect(job)
    return _form_page(request, form, teams)


def _form_page(request: HttpRequest, form: FineTuneForm, teams: list[Any]) -> HttpResponse:
    return render(request, "catalog/finetune_new.html", {"form": form, "teams": teams})


def _session_ended(request: HttpRequest) -> HttpResponse:
    """A form posted after the session ended: say so (nothing was stored) and
    offer the login page, which brings the form back filled in (but the file)."""
    kept = {k: request.POST[k] for k in FORM_FIELDS_KEPT if request.POST.get(k)}
    again = f"{resolve_url('catalog:finetune_new')}?{urlencode(kept)}"
    login = f"{resolve_url('login')}?{urlencode({'next': again})}"
    return render(request, "catalog/finetune_new.html", {"session_ended": True, "login_url": login}, status=403)


def _job_context(request: HttpRequest, job_id: int) -> dict[str, object]:
    job = jobs_visible(user=request.user).filter(pk=job_id).first()
    if job is None:
        raise Http404("No fine-tune job with that id in your teams.")
    evaluation = job.evaluation or {}
    labels, matrix, folded = confusion_view(evaluation.get("labels", []), evaluation.get("confusion", []))
    return {
        "job": job,
        "curve": loss_curve(job.loss_history),
        "per_class": evaluation.get("per_class", []),
        "confusion": [{"label": labels[i], "cells": row} for i, row in enumerate(matrix)],
        "labels": labels,
        "folded": folded,
        "percent": round(job.progress * 100, 1),
        "baseline": evaluation.get("baseline"),
        "comparison": evaluation.get("comparison"),
        "trials": [
            t | {"curve": loss_curve(t.get("loss_history", []), width=360, height=120, pad=24)}
            for t in evaluation.get("trials", [])
        ],
    }


def confusion_view(
    labels: list[str], matrix: list[list[int]], limit: int = CONFUSION_MAX_CLASSES
) -> tuple[list[str], list[list[int]], int]:
    """A confusion matrix of at most ``limit`` + 1 rows: the ``limit`` classes
    with the most true examples, then one "other" row and column summing the
    rest. Returns the labels, the matrix and how many classes were folded."""
    n = len(labels)
    if n <= limit or len(matrix) != n:
        return labels, matrix, 0
    support = [sum(row) for row in matrix]
    top = sorted(sorted(range(n), key=lambda i: (-support[i], labels[i]))[:limit])
    kept = set(top)
    rest = [i for i in range(n) if i not in kept]
    folded_labels = [labels[i] for i in top] + [f"other ({len(rest)} classes)"]

    def fold(rows: list[int]) -> list[int]:
        cells = [sum(matrix[r][c] for r in rows) for c in top]
        return [*cells, sum(matrix[r][c] for r in rows for c in rest)]

    return folded_labels, [fold([i]) for i in top] + [fold(rest)], len(rest)


@login_required_htmx
@require_http_methods(["GET"])
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    if request.htmx:  # type: ignore[attr-defined]
        try:
            context = _job_context(request, job_id)
        except Http404:
            # The job left the user's teams while the page polled: reload the
            # whole page (its 404) rather than poll an error every second.
            response = HttpResponse(status=286)
            response["HX-Refresh"] = "true"
            return response
        response = render(request, "catalog/job_detail.html#live", context)
        if context["job"].is_terminal:  # type: ignore[attr-defined]
            response.status_code = 286  # htmx: stop polling
        return response
    return render(request, "catalog/job_detail.html", _job_context(request, job_id))


@require_POST
def job_cancel_view(request: HttpRequest, job_id: int) -> HttpResponse:
    if not request.user.is_authenticated:
        # Back to the job page after logging in (never a GET on this POST-only URL).
        return redirect_to_login(resolve_url("catalog:job_detail", job_id))
    job = jobs_visible(user=request.user).filter(pk=job_id).first()
    if job is None:
        raise Http404("No fine-tune job with that id in your teams.")
    try:
        job_cancel(job=job, user=request.user)
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    return redirect(job)
