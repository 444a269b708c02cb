"""Route × role × visibility authorization matrix.

Every URL pattern of the project (UI, API, /hf/; the admin aside) is taken from
the URL resolver itself and must have a case in ``CASES``: a new route without
one fails ``test_every_route_has_a_case``. Each case names the method and what
each role may do with a private and with an internal model of team A:

* ``ok``      — allowed: anything but 401/403/404/5xx (a 400 for an empty
                form still proves the request got past the permission check);
* ``hidden``  — 404, as for a model that does not exist;
* ``denied``  — 403 (the object is visible, the role is too low);
* ``login``   — anonymous: a redirect to the login page (UI) or 401 (API);
* ``any``     — public plumbing: never a 5xx.

Roles: anonymous, a viewer / member / maintainer of team A, a member of team B
(another team) and a superuser. Each request runs in a savepoint rolled back
afterwards, so a successful write never changes what the next case sees.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from catalog.models import FineTuneJob, TeamRole, Variant, VariantStatus, Visibility
from catalog.storage import artifact_put

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "viewer", "member", "maintainer", "outsider", "superuser"]
RANK = {"viewer": 1, "member": 2, "maintainer": 3, "superuser": 4}


def _walk(resolver: URLResolver, prefix: str = "") -> Iterator[str]:
    for p in resolver.url_patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern)


def all_routes() -> list[str]:
    return sorted({r for r in _walk(get_resolver()) if not r.startswith("admin/")})


# --- expectations ------------------------------------------------------------------


def _sees(role: str, vis: str) -> bool:
    return vis == Visibility.INTERNAL or role in RANK


def read_model(role: str, vis: str) -> str:
    return "ok" if _sees(role, vis) else "hidden"


def read_model_login(role: str, vis: str) -> str:
    """A page that needs a login even for an internal model."""
    if role == "anonymous":
        return "login"
    return read_model(role, vis)


def write_model(minimum: str, anon_private: str = "login", outsider: str = "denied") -> Callable[[str, str], str]:
    """A write on the model: invisible → hidden; visible → the role decides."""

    def expect(role: str, vis: str) -> str:
        if role == "anonymous":
            return anon_private if vis == Visibility.PRIVATE else "login"
        if not _sees(role, vis):
            return "hidden"
        if role == "outsider":
            return outsider
        return "ok" if RANK[role] >= RANK[minimum] else "denied"

    return expect


def team_write(minimum: str, outsider: str = "denied") -> Callable[[str, str], str]:
    """A write into team A (a new model, dataset, job): its role decides."""

    def expect(role: str, vis: str) -> str:
        if role == "anonymous":
            return "login"
        if role == "outsider":
            return outsider
        return "ok" if RANK[role] >= RANK[minimum] else "denied"

    return expect


def team_only(anon: str = "login", outsider: str = "hidden") -> Callable[[str, str], str]:
    """Objects of team A that are not models (jobs, the team page): its members only."""

    def expect(role: str, vis: str) -> str:
        if role == "anonymous":
            return anon
        return "ok" if role in RANK else outsider

    return expect


def logged_in(role: str, vis: str) -> str:
    return "login" if role == "anonymous" else "ok"


def login_then_any(role: str, vis: str) -> str:
    """Needs a login; what follows depends on the form's content."""
    return "login" if role == "anonymous" else "any"


def everyone(role: str, vis: str) -> str:
    return "ok"


def public(role: str, vis: str) -> str:
    return "any"


def not_found(role: str, vis: str) -> str:
    return "hidden"


@dataclass(frozen=True)
class Case:
    method: str
    expect: Callable[[str, str], str]
    # Valid input, so that the permission check — not validation — decides.
    # A callable gets the world (ids, files) and returns the body.
    data: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    json: bool = False


def _csv(world: dict[str, Any]) -> dict[str, Any]:
    from tests.conftest_data import clear_tickets_csv

    upload = io.BytesIO(clear_tickets_csv(40))
    upload.name = "tickets.csv"
    return {"file": upload, "team": "team-a", "name": "More tickets"}


def _weights(world: dict[str, Any]) -> dict[str, Any]:
    upload = io.BytesIO(b'{"architectures": ["BertModel"]}')
    upload.name = "config.json"
    return {"files": [upload]}


# route (as the resolver spells it) → cases. A new route needs an entry here.
CASES: dict[str, list[Case]] = {
    # --- accounts: Django's auth views, public by nature
    "accounts/login/": [Case("GET", public)],
    "accounts/logout/": [Case("POST", public)],
    "accounts/password_change/": [Case("GET", logged_in)],
    "accounts/password_change/done/": [Case("GET", logged_in)],
    "accounts/password_reset/": [Case("GET", public)],
    "accounts/password_reset/done/": [Case("GET", public)],
    "accounts/reset/<uidb64>/<token>/": [Case("GET", public)],
    "accounts/reset/done/": [Case("GET", public)],
    # --- UI
    "": [Case("GET", everyone)],
    "models/<slug:slug>/": [Case("GET", read_model)],
    "models/<slug:slug>/v<int:version>/compile/": [Case("POST", write_model("member"))],
    "models/<slug:slug>/v<int:version>/files/<str:name>": [Case("GET", read_model)],
    "models/<slug:slug>/aliases/": [
        Case("POST", write_model("maintainer"), lambda w: {"alias": "staging", "version": "1"})
    ],
    "models/<slug:slug>/lifecycle/": [
        Case("POST", write_model("maintainer"), lambda w: {"state": "deprecated", "reason": "matrix"})
    ],
    "models/<slug:slug>/card/": [
        Case("GET", write_model("maintainer")),
        Case("POST", write_model("maintainer"), lambda w: {"card": "# A card"}),
    ],
    "models/<slug:slug>/delete/": [Case("POST", write_model("maintainer"))],
    "register/": [Case("GET", logged_in)],
    "register/upload/": [Case("POST", logged_in)],
    "register/confirm/": [Case("POST", login_then_any)],
    "teams/<slug:slug>/": [Case("GET", team_only())],
    "teams/<slug:slug>/members/": [
        Case("POST", team_write("maintainer", outsider="hidden"), lambda w: {"username": "outsider", "role": "viewer"})
    ],
    "profile/": [Case("GET", logged_in)],
    "finetune/new/": [Case("GET", logged_in)],
    "jobs/<int:job_id>/": [Case("GET", team_only())],
    "jobs/<int:job_id>/cancel/": [Case("POST", team_write("member", outsider="hidden"))],
    # choosing a model: compare, try it, evaluations on a team's data
    "compare/": [
        Case("GET", everyone),
        # Both of team A's models: whoever cannot see the private one gets the 404 of a missing slug.
        Case(
            "GET",
            lambda role, vis: read_model(role, Visibility.PRIVATE),
            lambda w: {"models": ",".join(m.slug for m in w["models"].values())},
        ),
    ],
    "models/<slug:slug>/predict/": [Case("POST", read_model, lambda w: {"text": "a sentence"})],
    "jobs/": [Case("GET", logged_in)],
    "datasets/": [Case("GET", logged_in)],
    "datasets/<int:dataset_version_id>/leaderboard/": [Case("GET", team_only())],
    # Another team's member may post (their own datasets); team A's is refused with a message (400).
    "evaluations/new/": [
        Case("GET", logged_in),
        Case(
            "POST",
            team_write("member", outsider="ok"),
            lambda w: {"dataset_version": w["dataset"].pk, "models": [m.slug for m in w["models"].values()]},
        ),
    ],
    "evaluations/<int:evaluation_id>/": [Case("GET", team_only())],
    # --- API
    "api/v1/models/": [
        Case("GET", everyone),
        Case("POST", team_write("member"), lambda w: {"name": "Fresh", "team": "team-a"}, json=True),
    ],
    "api/v1/models/<slug:slug>/": [Case("GET", read_model)],
    "api/v1/models/<slug:slug>/versions/": [Case("POST", write_model("member"), _weights)],
    "api/v1/models/<slug:slug>/aliases/": [
        Case("POST", write_model("maintainer"), lambda w: {"alias": "staging", "version": 1}, json=True)
    ],
    "api/v1/models/<slug:slug>/aliases/<slug:alias>/": [Case("DELETE", write_model("maintainer"))],
    "api/v1/models/<slug:slug>/lifecycle/": [
        Case("POST", write_model("maintainer"), lambda w: {"state": "deprecated"}, json=True)
    ],
    "api/v1/models/<slug:slug>/card/": [
        Case("PUT", write_model("maintainer"), lambda w: {"card": "# A card"}, json=True)
    ],
    "api/v1/models/<slug:slug>/resolve": [Case("GET", read_model)],
    "api/v1/variants/<int:variant_id>/download": [Case("GET", read_model)],
    # scoped to the caller's teams: another team's version is not found
    "api/v1/versions/<int:version_id>/compile/": [Case("POST", write_model("member", outsider="hidden"))],
    "api/v1/taxonomy/<str:kind>/": [Case("GET", everyone)],
    "api/v1/datasets/": [Case("GET", logged_in), Case("POST", team_write("member"), _csv)],
    "api/v1/models/<slug:slug>/predict": [Case("POST", read_model, lambda w: {"inputs": ["a sentence"]}, json=True)],
    "api/v1/evaluations/": [
        Case("GET", logged_in),
        Case(
            "POST",
            team_write("member", outsider="ok"),  # 422 for a dataset of another team
            lambda w: {"dataset": w["dataset"].pk, "models": [m.slug for m in w["models"].values()]},
            json=True,
        ),
    ],
    "api/v1/finetune-jobs/": [
        Case("GET", logged_in),
        Case(
            "POST",
            team_write("member"),
            lambda w: {"base": "tiny-encoder", "dataset": w["dataset"].pk, "name": "Matrix", "team": "team-a"},
            json=True,
        ),
    ],
    "api/v1/finetune-jobs/<int:job_id>/": [Case("GET", team_only(anon="login"))],
    "api/v1/finetune-jobs/<int:job_id>/cancel/": [Case("POST", team_write("member", outsider="hidden"))],
    "api/v1/schema/": [Case("GET", everyone)],
    "api/v1/docs/": [Case("GET", everyone)],
    # --- Hugging Face Hub protocol (a private repo is RepoNotFound even to anonymous writers)
    "hf/api/repos/create": [
        # another team's namespace is "no team of yours" (404), as on the Hub
        Case(
            "POST",
            team_write("member", outsider="hidden"),
            lambda w: {"name": "fresh", "organization": "team-a"},
            json=True,
        )
    ],
    "hf/api/validate-yaml": [Case("POST", public)],
    "hf/api/agent-harnesses": [Case("GET", public)],
    "hf/api/models/<str:namespace>/<str:name>": [Case("GET", read_model)],
    "hf/api/models/<str:namespace>/<str:name>/revision/<path:revision>": [Case("GET", read_model)],
    "hf/api/models/<str:namespace>/<str:name>/tree/<str:revision>": [Case("GET", read_model)],
    "hf/api/models/<str:namespace>/<str:name>/tree/<str:revision>/<path:path>": [Case("GET", public)],
    "hf/api/models/<str:namespace>/<str:name>/paths-info/<str:revision>": [Case("POST", read_model)],
    "hf/api/models/<str:namespace>/<str:name>/preupload/<str:revision>": [
        Case("POST", write_model("member", anon_private="hidden"), lambda w: {"files": []}, json=True)
    ],
    "hf/api/models/<str:namespace>/<str:name>/commit/<str:revision>": [
        Case("POST", write_model("member", anon_private="hidden"))
    ],
    "hf/api/models/<str:namespace>/<str:name>/xet-write-token/<str:revision>": [Case("GET", public)],
    "hf/api/models/<str:namespace>/<str:name>/xet-read-token/<str:revision>": [Case("GET", public)],
    "hf/xet-is-not-supported/set-HF_HUB_DISABLE_XET=1-and-retry": [Case("GET", public)],
    "hf/<str:namespace>/<str:name>.git/info/lfs/objects/batch": [
        Case("POST", write_model("member", anon_private="hidden"))
    ],
    "hf/lfs/upload/<str:token>": [Case("PUT", public)],
    "hf/<str:namespace>/<str:name>/resolve/<str:revision>/<path:filename>": [Case("GET", read_model)],
    "hf/^api/(?P<rest>.*)$": [Case("GET", not_found)],
    "hf/<str:namespace>/<str:name>": [Case("GET", read_model)],
    "hf/^(?P<rest>.*)$": [Case("GET", not_found)],
}


def test_every_route_has_a_case() -> None:
    missing = [r for r in all_routes() if r not in CASES]
    stale = [r for r in CASES if r not in all_routes()]
    assert not missing, f"routes without an authorization case in {__file__}: {missing}"
    assert not stale, f"cases for routes that no longer exist: {stale}"


# --- the world -----------------------------------------------------------------------


@pytest.fixture
def world(make_model: Any, make_team: Any, make_user: Any, tiny_encoder: Any) -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    from catalog.models import Membership
    from catalog.services.datasets import dataset_upload
    from catalog.services.finetune import finetune_request
    from catalog.services.registry import alias_set
    from tests.conftest_data import clear_tickets_csv as ticket_csv

    team_a, team_b = make_team("Team A"), make_team("Team B")
    users: dict[str, Any] = {"anonymous": None}
    for role in ("viewer", "member", "maintainer"):
        user = make_user(role)
        Membership.objects.create(team=team_a, user=user, role=getattr(TeamRole, role.upper()))
        users[role] = user
    users["outsider"] = make_user("outsider", team_b)
    users["superuser"] = get_user_model().objects.create_superuser("root", "root@example.org", "pw-correct-horse")

    stored = artifact_put(io.BytesIO(b"onnx bundle bytes" * 100))
    models = {}
    for vis in (Visibility.PRIVATE, Visibility.INTERNAL):
        model = make_model(f"{vis} model", team=team_a, visibility=vis)
        Variant.objects.create(
            version=model.latest_version,
            name="onnx-fp32",
            format="onnx",
            precision="fp32",
            runtime="onnxruntime",
            hardware="cpu",
            status=VariantStatus.SERVED,
            sha256=stored.sha256,
            size=stored.size,
            latency_p50_ms=1.0,
            latency_p95_ms=2.0,
        )
        models[vis] = model
    dataset, _ = dataset_upload(team=team_a, source=io.BytesIO(ticket_csv()), file_name="t.csv", name="Tickets")
    job: FineTuneJob = finetune_request(
        team=team_a,
        base_version=tiny_encoder,
        dataset_version=dataset,
        name="A job",
        user=users["member"],
        enqueue=False,
    )
    for model in models.values():
        alias_set(registered_model=model, name="production", version=model.latest_version)
    from evaluations.models import Evaluation, EvaluationEntry

    evaluation = Evaluation.objects.create(team=team_a, dataset_version=dataset, created_by=users["member"])
    for model in models.values():
        EvaluationEntry.objects.create(evaluation=evaluation, version=model.latest_version)
    return {"users": users, "models": models, "team": team_a, "job": job, "dataset": dataset, "evaluation": evaluation}


def _url(route: str, world: dict[str, Any], vis: str) -> str:
    model = world["models"][vis]
    version = model.latest_version
    variant = version.variants.get(name="onnx-fp32")
    values = {
        "slug": model.slug,
        "version": str(version.version),
        "version_id": str(version.pk),
        "variant_id": str(variant.pk),
        "job_id": str(world["job"].pk),
        "dataset_version_id": str(world["dataset"].pk),
        "evaluation_id": str(world["evaluation"].pk),
        "kind": "modality",
        "namespace": model.team.slug,
        "name": "model.safetensors" if "files/" in route else model.slug,
        "revision": "main",
        "path": "",
        "filename": "model.safetensors",
        "alias": "production",
        "token": "not-a-token",
        "uidb64": "MQ",
        "rest": "nothing/here",
    }
    if route.startswith("teams/"):
        values["slug"] = world["team"].slug
    url = "/" + route
    url = url.replace("^", "").replace("$", "").replace("(?P<rest>.*)", values["rest"])

    def sub(match: re.Match[str]) -> str:
        return values[match.group(2)]

    return re.sub(r"<(?:(\w+):)?(\w+)>", sub, url)


def _client(world: dict[str, Any], role: str, api: bool) -> Client:
    from catalog.services.tokens import api_token_create

    user = world["users"][role]
    if user is None:
        return Client()
    if api:
        key = api_token_create(user=user, name=f"matrix {role}")
        return Client(HTTP_AUTHORIZATION=f"Token {key}")
    client = Client()
    client.force_login(user)
    return client


def _verdict(response: Any) -> str:
    status = response.status_code
    if status >= 500:
        return f"server error {status}"
    if status == 404:
        return "hidden"
    if status == 403:
        return "denied"
    if status == 401:
        return "login"
    if status in (301, 302, 303):
        if "/accounts/login/" in response.get("Location", ""):
            return "login"
        # A page form answers with a redirect and a message either way.
        from django.contrib.messages import get_messages

        levels = {m.level_tag for m in get_messages(response.wsgi_request)}
        return "denied" if "error" in levels else "ok"
    if status == 405:
        return "method not allowed"
    # A write into a team the caller has no (or too low a) role in is refused
    # on the request's ``team`` field.
    if (
        status in (400, 422)
        and response.get("Content-Type", "").startswith("application/json")
        and "team" in (response.json().get("errors") or {})
    ):
        return "denied"
    return "ok"  # 2xx, 3xx, and 400/409/422: the request got past the permission check


def _send(client: Client, case: Case, url: str, world: dict[str, Any]) -> Any:
    data = case.data(world) if case.data else {}
    method = getattr(client, case.method.lower())
    if case.json:
        return method(url, data=data, content_type="application/json")
    if case.method in ("PUT", "DELETE", "PATCH"):
        return method(url)
    return method(url, data=data)


@pytest.mark.parametrize("route", sorted(CASES))
def test_route_role_visibility(route: str, world: dict[str, Any]) -> None:
    api = route.startswith(("api/", "hf/"))
    clients = {role: _client(world, role, api) for role in ROLES}
    problems = []
    for case in CASES[route]:
        for vis in (Visibility.PRIVATE, Visibility.INTERNAL):
            url = _url(route, world, vis)
            for role in ROLES:
                expected = case.expect(role, vis)
                with transaction.atomic():
                    response = _send(clients[role], case, url, world)
                    transaction.set_rollback(True)
                got = _verdict(response)
                if got.startswith("server error") or (expected != "any" and got != expected):
                    body = response.content[:160] if got != expected else b""
                    problems.append(f"{case.method} {url} as {role} ({vis}): expected {expected}, got {got} {body!r}")
    assert not problems, "\n".join(problems)


def test_a_private_model_404_is_byte_identical_to_a_missing_one(world: dict[str, Any]) -> None:
    private = world["models"][Visibility.PRIVATE]
    for role in ("anonymous", "outsider"):
        for prefix, api in (("/models/", False), ("/api/v1/models/", True)):
            client = _client(world, role, api)
            hidden = client.get(f"{prefix}{private.slug}/")
            missing = client.get(f"{prefix}no-such-model-at-all/")
            assert hidden.status_code == missing.status_code == 404
            assert _normalised(hidden.content, private.slug) == _normalised(missing.content, "no-such-model-at-all"), (
                role,
                prefix,
            )


def _normalised(body: bytes, slug: str) -> bytes:
    """The page without what differs on every response (CSP nonce, CSRF token)."""
    body = body.replace(slug.encode(), b"SLUG")
    body = re.sub(rb'nonce="[^"]*"', b'nonce=""', body)
    body = re.sub(rb'"X-CSRFToken": "[^"]*"', b'"X-CSRFToken": ""', body)
    return re.sub(rb'(csrfmiddlewaretoken" value|csrf-token" content)="[^"]*"', rb'\1=""', body)
