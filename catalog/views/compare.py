"""``/compare/?models=a,b,c``: up to four models side by side."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from catalog.selectors.compare import MAX_COMPARE, TooMany, models_compare, slugs_parse


@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    slugs = slugs_parse(request.GET.getlist("models"))
    context: dict[str, object] = {"slugs": slugs, "max_compare": MAX_COMPARE}
    if len(slugs) < 2 and len(slugs) <= MAX_COMPARE:
        context["message"] = "Tick two to four models in the catalogue, then press Compare."
        return render(request, "catalog/compare.html", context, status=200 if not slugs else 400)
    try:
        comparison, missing = models_compare(user=request.user, slugs=slugs)
    except TooMany as exc:
        context["message"] = str(exc)
        return render(request, "catalog/compare.html", context, status=400)
    if comparison is None:
        # A private model of another team answers exactly like one that does not exist.
        raise Http404("No model with that slug is visible to you.")
    context["cmp"] = comparison
    return render(request, "catalog/compare.html", context)
