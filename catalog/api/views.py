"""Read API: search, model detail, taxonomy trees. Thin: validate, call a selector, serialise."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch
from django.http import Http404, HttpResponse, QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, parser_classes
from rest_framework.exceptions import NotFound
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api import registration
from catalog.api.errors import COMMON_ERRORS, Unprocessable, error_responses
from catalog.api.params import SEMANTIC_CODES, SearchParamsSerializer, search_query
from catalog.api.serializers import (
    ModelDetailSerializer,
    ModelListSerializer,
    ModelSummarySerializer,
    TaxonomySerializer,
)
from catalog.models import Alias, ModelVersion
from catalog.selectors.documents import Viewer, details_prebuild_once, json_bytes, list_rows, model_detail_json
from catalog.selectors.facet_index import facet_index
from catalog.selectors.search import SearchResult, model_search
from catalog.selectors.taxonomy import UnknownTaxonomyNode, taxonomy_tree
from catalog.selectors.visibility import models_visible
from catalog.taxonomy import TAXONOMIES


def _page_url(request: Request, page: int) -> str:
    query = QueryDict(mutable=True)  # a copy of the query without deep-copying it
    for key, values in request.query_params.lists():
        query.setlist(key, values)
    query["page"] = str(page)
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


@extend_schema(
    methods=["GET"],
    operation_id="models_list",
    parameters=[SearchParamsSerializer],
    responses={200: ModelListSerializer, **error_responses(400, 401, 404, 422, *COMMON_ERRORS)},
    description="Search the catalogue. Tree filters (`modality`, `result`, `domain`) match the "
    "whole subtree of the node. The response carries `facets`: each tree's nodes that hold "
    "matching models, with counts rolled up to parents, over the current result set. "
    "`GET /api/v1/taxonomy/{kind}/` lists every node. A `page` past the last one answers 404 "
    "(page 1 always exists, empty when nothing matches).",
)
@extend_schema(methods=["POST"], **registration.MODEL_CREATE_SCHEMA)
@api_view(["GET", "POST"])
@parser_classes([JSONParser])  # a new model is described in JSON (form fields would blur "" and absent)
def models_list(request: Request) -> HttpResponse | Response:
    if request.method == "POST":  # registration (catalog.api.registration)
        return registration.model_create(request)
    parsed = search_query(request.query_params)  # the common case, without the serializer
    if parsed is None:
        params = SearchParamsSerializer(data=request.query_params)
        if not params.is_valid():
            # Well-formed but unusable values (a query with nothing searchable) are 422s.
            semantic = all(
                getattr(e, "code", "") in SEMANTIC_CODES
                for field_errors in params.errors.values()
                for e in field_errors
            )
            raise (Unprocessable if semantic else serializers.ValidationError)(params.errors)
        parsed = params.search_params(), params.validated_data["page"], params.validated_data["page_size"]
    search, page, size = parsed
    try:
        result = model_search(user=request.user, params=search)
    except UnknownTaxonomyNode as exc:
        raise Unprocessable({exc.kind: [f"No {exc.kind} node has the path {exc.path!r}."]}) from exc
    last_page = max(1, -(-result.total // size))
    if page > last_page:
        raise NotFound(
            f"Page {page} is past the last page ({last_page}) of {result.total} result"
            f"{'s' if result.total != 1 else ''}.",
            code="page_not_found",
        )
    head: dict[str, Any] = {
        "count": result.total,
        "page": page,
        "pages": last_page,
        "next": _page_url(request, page + 1) if page < last_page else None,
        "previous": _page_url(request, page - 1) if page > 1 else None,
    }
    if _wants_json(request):
        # Ready row JSON joined into the page (catalog/selectors/documents.py):
        # the same bytes the serializer and JSONRenderer give, without them.
        start = (page - 1) * size
        details_prebuild_once(result.index)  # an API client: its next request is likely a detail
        rows = list_rows(result.index, [int(i) for i in result.ids[start : start + size]], _base(request))
        body = json_bytes(head)[:-1] + b',"results":[' + b",".join(rows) + b'],"facets":'
        return _json_response(body + _facets_json(result) + b"}")
    rows_ = result.page(page, size)
    return Response(
        {
            **head,
            "results": ModelSummarySerializer(rows_, many=True, context={"request": request}).data,
            "facets": _facets(result),
        }
    )


def _facets(result: SearchResult) -> dict[str, Any]:
    return {
        **{kind: [n.as_dict(prune=True) for n in result.facets.get(kind, []) if n.count] for kind in TAXONOMIES},
        "team": [{"slug": s, "name": n, "count": c} for s, n, c in result.team_counts],
        "license": [{"value": v, "count": c} for v, c in result.license_counts],
        "tag": [{"value": v, "count": c} for v, c in result.tag_counts],
    }


def _facets_json(result: SearchResult) -> bytes:
    """``json_bytes(_facets(result))``, the trees joined from ready node bytes
    (kept with the counts of the result set: the same set, the same bytes)."""
    facts = result.facts
    if facts is not None and facts.facets_json is not None:
        return facts.facets_json
    content = _facets_json_made(result)
    if facts is not None:
        facts.facets_json = content
    return content


def _facets_json_made(result: SearchResult) -> bytes:
    trees = b"".join(b'"' + kind.encode() + b'":' + result.tree_json(kind) + b"," for kind in TAXONOMIES)
    rest = json_bytes(
        {
            "team": [{"slug": s, "name": n, "count": c} for s, n, c in result.team_counts],
            "license": [{"value": v, "count": c} for v, c in result.license_counts],
            "tag": [{"value": v, "count": c} for v, c in result.tag_counts],
        }
    )
    return b"{" + trees + rest[1:]


def _wants_json(request: Request) -> bool:
    """The negotiated renderer is plain JSON (the browsable API renders as before)."""
    return getattr(request, "accepted_renderer", None) is not None and request.accepted_renderer.format == "json"


def _base(request: Request) -> str:
    """``scheme://host`` as ``build_absolute_uri`` writes it."""
    return request.build_absolute_uri("/")[:-1]


def _json_response(content: bytes) -> HttpResponse:
    return HttpResponse(content, content_type="application/json")


@extend_schema(
    operation_id="models_retrieve", responses={200: ModelDetailSerializer, **error_responses(401, 404, *COMMON_ERRORS)}
)
@api_view(["GET"])
def model_detail(request: Request, slug: str) -> HttpResponse | Response:
    if _wants_json(request):
        # The model's ready JSON for this generation (catalog/selectors/documents.py).
        content = model_detail_json(facet_index(), slug=slug, viewer=Viewer.of(request.user), base=_base(request))
        if content is None:
            raise Http404("No model with that slug is visible to you.")
        return _json_response(content)
    versions = ModelVersion.objects.select_related(
        "base_version__registered_model", "dataset_version"
    ).prefetch_related("metrics", "variants")
    model = (
        models_visible(user=request.user)
        .select_related("team", "modality", "result_kind", "domain", "latest_version")
        .prefetch_related(
            Prefetch("versions", queryset=versions),
            Prefetch("aliases", queryset=Alias.objects.select_related("version")),
            "latest_version__metrics",
        )
        .filter(slug=slug)
        .first()
    )
    if model is None:
        # The same answer for "absent" and "private to another team".
        raise Http404("No model with that slug is visible to you.")
    return Response(ModelDetailSerializer(model, context={"request": request}).data)


@extend_schema(
    parameters=[OpenApiParameter("kind", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(TAXONOMIES))],
    responses={200: TaxonomySerializer, **error_responses(401, 404, *COMMON_ERRORS)},
)
@api_view(["GET"])
def taxonomy(request: Request, kind: str) -> Response:
    if kind not in TAXONOMIES:
        raise Http404(f"Unknown taxonomy {kind!r}; use one of {', '.join(TAXONOMIES)}.")
    tree: list[Any] = [n.as_dict() for n in taxonomy_tree(kind=kind)]
    return Response({"kind": kind, "nodes": tree})
