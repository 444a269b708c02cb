"""Catalogue pages: search with facets, and the model page."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db.models import Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from catalog.api.params import SearchParamsSerializer
from catalog.models import Alias, ModelVersion
from catalog.selectors.jobs import jobs_visible
from catalog.selectors.lineage import version_lineage
from catalog.selectors.search import model_search
from catalog.selectors.taxonomy import UnknownTaxonomyNode
from catalog.selectors.variants import latency_chart
from catalog.selectors.visibility import models_visible, user_can_edit
from catalog.services.finetune import FINETUNABLE_FAMILIES


@require_GET
@vary_on_headers("HX-Request")
def catalog_index(request: HttpRequest) -> HttpResponse:
    form = SearchParamsSerializer(data=request.GET)
    errors: dict[str, list[str]] = {}
    if not form.is_valid():
        # Keep every valid filter; report the invalid ones beside the results.
        errors = {k: [str(e) for e in v] for k, v in form.errors.items()}
        form = SearchParamsSerializer(data={k: v for k, v in request.GET.items() if k not in errors})
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
    rows = result.page(page, size)
    pages = max(1, -(-result.total // size))
    context = {
        "result": result,
        "params": result.params,
        "rows": rows,
        "page": page,
        "pages": pages,
        "errors": errors,
        "facet_titles": {"modality": "Input modality", "result": "Result", "domain": "Domain"},
    }
    template = "catalog/index.html#results" if request.htmx else "catalog/index.html"  # type: ignore[attr-defined]
    return render(request, template, context)


@require_POST
def version_compile_view(request: HttpRequest, slug: str, version: int) -> HttpResponse:
    from catalog.services.compile import compile_request

    model = models_visible(user=request.user).filter(slug=slug).first()
    if model is None or not user_can_edit(user=request.user, model=model):
        raise Http404("No model with that slug that you may change.")
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
    if current is None:
        current = next((v for v in all_versions if v.pk == model.latest_version_id), None)
    if current is None and all_versions:
        current = all_versions[0]
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
            "lineage": version_lineage(version=current) if current else None,
            "chart": latency_chart(list(current.variants.all())) if current else {},
            "server": request.build_absolute_uri("/").rstrip("/"),
            "finetunable": bool(request.user.is_authenticated and current and current.family in FINETUNABLE_FAMILIES),
            "jobs": list(
                jobs_visible(user=request.user).filter(
                    Q(base_version__registered_model=model) | Q(result_version__registered_model=model)
                )[:20]
            ),
        },
    )
