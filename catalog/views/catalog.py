"""Catalogue pages: search with facets, and the model page."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from catalog.api.params import SearchParamsSerializer
from catalog.models import Alias, ModelVersion
from catalog.selectors.jobs import jobs_visible
from catalog.selectors.lineage import lineage_refs, version_lineage, version_weights
from catalog.selectors.search import model_search
from catalog.selectors.taxonomy import UnknownTaxonomyNode
from catalog.selectors.variants import hardware_caption, latency_chart, pull_command_args
from catalog.selectors.visibility import models_visible, user_can_edit
from catalog.services.finetune import FINETUNABLE_FAMILIES


@require_GET
@vary_on_headers("HX-Request")
def catalog_index(request: HttpRequest) -> HttpResponse:
    query, errors = _percent_to_fraction(request.GET.dict())
    form = SearchParamsSerializer(data=query)
    if not form.is_valid():
        # Keep every valid filter; report the invalid ones beside the results.
        errors.update({k: [str(e) for e in v] for k, v in form.errors.items()})
        form = SearchParamsSerializer(data={k: v for k, v in query.items() if k not in errors})
        form.is_valid(raise_exception=True)
    params, page = form.search_params(), form.validated_data["page"]
    while True:
        try:
            result = model_search(user=request.user, params=params)
            break
        except UnknownTaxonomyNode as exc:
            # Drop the unknown node (one per tree at most) and say so.
            errors[exc.kind] = [f"No {exc.kind} node has the path {exc.path!r}."]
            setattr(params, exc.kind, "")
    size = settings.CATALOG_PAGE_SIZE
    pages = max(1, -(-result.total // size))
    past_end = page > pages
    if past_end:
        # "?page=9999" shows the last page (and says so) rather than
        # "5 models" above "No model matches".
        page = pages
    rows = result.page(page, size)
    context = {
        "result": result,
        "params": result.params,
        "rows": rows,
        "page": page,
        "pages": pages,
        "errors": errors,
        "past_end": past_end,
        "min_precision_pct": query.get("min_precision_pct", ""),
        "facet_titles": {"modality": "Input modality", "result": "Result", "domain": "Domain"},
    }
    htmx = request.htmx  # type: ignore[attr-defined]
    # A history-restore request (Back to a page htmx no longer caches) wants the whole page.
    partial = bool(htmx) and not htmx.history_restore_request
    return render(request, "catalog/index.html#results" if partial else "catalog/index.html", context)


def _percent_to_fraction(query: dict[str, str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The page's "min precision" is a percentage like every figure it shows;
    the API's ``min_precision`` stays a fraction (0–1)."""
    raw = query.pop("min_precision", "").strip()
    if not raw:
        return query, {}
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 100.0:  # NaN fails too
        return query, {"min_precision": [f"Min precision is a percentage from 0 to 100, not {raw[:20]!r}."]}
    query["min_precision"] = str(value / 100)
    query["min_precision_pct"] = f"{value:g}"
    return query, {}


@require_POST
def version_compile_view(request: HttpRequest, slug: str, version: int) -> HttpResponse:
    from catalog.services.compile import compile_request

    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    model = models_visible(user=request.user).filter(slug=slug).first()
    if model is None:
        raise Http404("No model with that slug.")
    if not user_can_edit(user=request.user, model=model):
        raise PermissionDenied("Compiling needs the member role in the model's team; viewers only look.")
    v = model.versions.filter(version=version).first()
    if v is None:
        raise Http404("No such version.")
    if compile_request(version=v):
        messages.success(request, f"Compile of v{version} queued; variants appear here when the worker is done.")
    else:
        messages.error(request, f"v{version} ({v.family}, {v.status}) cannot be compiled.")
    return redirect(f"{model.get_absolute_url()}?version={version}")


@require_GET
def model_detail(request: HttpRequest, slug: str) -> HttpResponse:
    versions = ModelVersion.objects.select_related(
        "base_version__registered_model", "dataset_version__dataset", "finetune_job"
    ).prefetch_related("metrics", "variants", "derived_versions__registered_model")
    model = (
        models_visible(user=request.user)
        .select_related("team", "modality__parent__parent", "result_kind__parent", "domain__parent__parent")
        .prefetch_related(
            Prefetch("versions", queryset=versions),
            Prefetch("aliases", queryset=Alias.objects.select_related("version")),
        )
        .filter(slug=slug)
        .first()
    )
    if model is None:
        raise Http404("No model with that slug is visible to you.")
    all_versions = list(model.versions.all())
    requested = request.GET.get("version", "")
    current = next((v for v in all_versions if str(v.version) == requested), None)
    if requested and current is None:
        # Never show another version than the one asked for.
        raise Http404(f"{model.name} has no version {requested[:20]}.")
    if current is None:
        current = next((v for v in all_versions if v.pk == model.latest_version_id), None)
    if current is None and all_versions:
        current = all_versions[0]
    variants = list(current.variants.all()) if current else []
    aliases_by_version: dict[int, list[str]] = {}
    for alias in model.aliases.all():
        aliases_by_version.setdefault(alias.version_id, []).append(alias.name)
    return render(
        request,
        "catalog/model_detail.html",
        {
            "model": model,
            "versions": all_versions,
            "current": current,
            "aliases_by_version": aliases_by_version,
            "can_edit": user_can_edit(user=request.user, model=model),
            "lineage": version_lineage(version=current, user=request.user) if current else None,
            "lineage_refs": lineage_refs(user=request.user, versions=all_versions),
            "weights": version_weights(version=current) if current else [],
            "chart": latency_chart(variants),
            "measured_on": hardware_caption(variants),
            "pull": pull_command_args(model=model, version=current) if current else None,
            "server": request.build_absolute_uri("/").rstrip("/"),
            "finetunable": bool(request.user.is_authenticated and current and current.family in FINETUNABLE_FAMILIES),
            "jobs": list(
                jobs_visible(user=request.user).filter(
                    Q(base_version__registered_model=model) | Q(result_version__registered_model=model)
                )[:20]
            ),
        },
    )
