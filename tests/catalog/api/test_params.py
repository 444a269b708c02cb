"""The search parameters' fast path gives what the serializer gives, or defers to it."""

from __future__ import annotations

import itertools
from dataclasses import asdict
from urllib.parse import urlencode

import pytest
from django.http import QueryDict

from catalog.api.params import SearchParamsSerializer, search_query

# Values each parameter is tried with: plain ones, and ones the serializer
# refuses, trims or coerces.
ODD = ["", " ", "  padded  ", "\x00", "a\x00b", "x" * 201, "é", "\U0001f600", "%", "a", "\t\n"]
VALUES: dict[str, list[str]] = {
    "q": ["sentiment", "fraud detection", "ab", " bert ", "classify emails by department", *ODD],
    "modality": ["text", "image/handwriting", "/text/", *ODD],
    "domain": ["business", "x" * 255, "x" * 256],
    "team": ["vision", "team-a_1", "no spaces", "é", " vision ", "a/b", *ODD],
    "framework": ["pytorch", "x" * 40, "x" * 41],
    "precision": ["int8", "fp32", "x" * 10, "x" * 11],
    "min_precision": ["0", "0.95", "1", "1.0", "1.5", "-0.1", " 0.5 ", "1_0", "nan", "inf", "1e-3", "abc", "", "0x1"],
    "max_p95_ms": ["10", "0", "-1", "1e9", "inf", "", "2.5", "ten"],
    "sort": ["relevance", "newest", "precision", "", "Newest", "name", " newest"],
    "page": ["1", "2", "0", "-1", "1.0", "01", "", " 2", "+2", "1_0", "²", "9" * 12, "a"],
    "page_size": ["1", "20", "100", "101", "0", "50.0", "", "x"],
    "license": ["mit", "x" * 101],
    "tag": ["nlp", " nlp "],
}


def _serializer_answer(query: QueryDict) -> tuple[dict[str, object], int, int] | None:
    form = SearchParamsSerializer(data=query)
    if not form.is_valid():
        return None
    return asdict(form.search_params()), form.validated_data["page"], form.validated_data["page_size"]


def _queries() -> list[str]:
    out = [""]
    for name, values in VALUES.items():
        out += [urlencode({name: v}) for v in values]
    # Pairs of parameters, and repeated keys (the last value counts).
    for (a, va), (b, vb) in itertools.combinations([(k, v[0]) for k, v in VALUES.items()], 2):
        out.append(urlencode({a: va, b: vb}))
    out += ["q=sentiment&q=%25", "page=2&page=x", "page_size=100&page_size=20", "q=ab&unknown=1"]
    out.append(urlencode({"q": "fraud", "domain": "business", "modality": "text", "page_size": "100"}))
    return out


@pytest.mark.parametrize("query", _queries())
def test_fast_path_agrees_with_the_serializer(query: str) -> None:
    qd = QueryDict(query)
    fast = search_query(qd)
    slow = _serializer_answer(qd)
    if fast is not None:
        # Whatever the fast path answers, the serializer answers the same.
        assert slow is not None, query
        assert (asdict(fast[0]), fast[1], fast[2]) == slow, query
    # None: the view runs the serializer itself, whatever it says stands.


def test_fast_path_answers_the_common_queries() -> None:
    for query in ("", "q=sentiment&page_size=100", "domain=business&modality=text&q=fraud&page=2", "sort=newest"):
        assert search_query(QueryDict(query)) is not None, query
    params, page, size = search_query(QueryDict("q=+bert+&min_precision=0.5&page_size=100"))  # type: ignore[misc]
    assert (params.q, params.min_precision, page, size) == ("bert", 0.5, 1, 100)


def test_refused_queries_defer_to_the_serializer() -> None:
    for query in ("q=%25", "q=a", "page=0", "page_size=101", "sort=name", "team=no+spaces", "min_precision=2"):
        assert search_query(QueryDict(query)) is None, query
        assert _serializer_answer(QueryDict(query)) is None, query


@pytest.mark.parametrize(
    "query",
    ["", "q=bert", "page=3&q=a+b", "q=%C3%A9t%C3%A9&tag=x&tag=y&page=2", "page=1&page=4&sort=newest", "k=&page_size=5"],
)
def test_page_links_keep_the_query(query: str) -> None:
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from catalog.api.views import _page_url

    request = Request(APIRequestFactory().get(f"/api/v1/models/?{query}"))
    expected = request.query_params.copy()  # what the link was built from before
    expected["page"] = "7"
    assert _page_url(request, 7) == request.build_absolute_uri(f"/api/v1/models/?{expected.urlencode()}")
    assert request.query_params.urlencode() == QueryDict(query).urlencode()  # the request's own query untouched
