"""Registration API: create a model, upload a folder, promote, deprecate —
route × role, refusals with the shared error shape, private models invisible."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from catalog.models import Alias, Lifecycle, ModelVersion, RegisteredModel, VersionStatus
from catalog.roles import Role
from catalog.services.teams import membership_set
from catalog.services.tokens import api_token_create
from tests.registration_folders import LABELS, make_hf_folder

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hf_folder(
        tmp_path_factory.mktemp("bert"), kind="bert", readme="---\nlicense: mit\ntags: [tickets]\n---\n# Router\n"
    )


@pytest.fixture
def clients(taxonomy: None, make_team: Callable[..., Any], make_user: Callable[..., Any]) -> dict[str, APIClient]:
    team = make_team("Team A")
    out: dict[str, APIClient] = {"anonymous": APIClient()}
    for role in Role:
        user = make_user(role.value)
        membership_set(team=team, user=user, role=role)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user, name='t')}")
        out[role.value] = client
    outsider = APIClient()
    outsider.credentials(
        HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=make_user('outsider', make_team('Team B')), name='t')}"
    )
    out["outsider"] = outsider
    return out


def upload(client: APIClient, slug: str, files: dict[str, bytes], **extra: Any) -> Any:
    parts = [SimpleUploadedFile(name, data, content_type="application/octet-stream") for name, data in files.items()]
    return client.post(f"/api/v1/models/{slug}/versions/", {"files": parts, "message": "hello"}, **extra)


def upload_raw(client: APIClient, slug: str, files: dict[str, bytes]) -> Any:
    """A multipart body written by hand: test-client file objects strip
    directories from names, a hostile client does not."""
    boundary = "----registration-test-boundary"
    body = b""
    for name, data in files.items():
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return client.generic(
        "POST",
        f"/api/v1/models/{slug}/versions/",
        body,  # type: ignore[arg-type]
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def create(client: APIClient, name: str = "Ticket router", **body: Any) -> Any:
    return client.post("/api/v1/models/", {"name": name, "team": "team-a", **body}, format="json")


@pytest.mark.parametrize(
    ("who", "expected"), [("anonymous", 401), ("viewer", 403), ("member", 201), ("maintainer", 201), ("outsider", 422)]
)
def test_create_model_route_by_role(clients: dict[str, APIClient], who: str, expected: int) -> None:
    response = create(clients[who], visibility="private", domain="general/news")
    assert response.status_code == expected, response.content
    if expected == 201:
        body = response.json()
        assert body["slug"] == "ticket-router"
        assert body["team"] == "team-a"
        assert body["domain"] == "general/news"
        assert body["versions_url"].startswith("http://testserver/api/v1/models/ticket-router/versions/")
    else:
        assert set(response.json()) >= {"detail", "code"}
        assert not RegisteredModel.objects.exists()


def test_create_conflict_and_bad_tree(clients: dict[str, APIClient]) -> None:
    assert create(clients["member"]).status_code == 201
    again = create(clients["member"], name="ticket router")
    assert again.status_code == 409
    assert again.json()["code"] == "exists"
    bad = create(clients["member"], name="Other", modality="no/such/node")
    assert bad.status_code == 422
    assert "modality" in bad.json()["errors"]


def test_upload_folder_registers_a_version(
    clients: dict[str, APIClient], folder: Path, monkeypatch: pytest.MonkeyPatch, artifact_store: Path
) -> None:
    from catalog import uploads

    hashed: list[str] = []
    written = [0]
    write, store = uploads.BlobWriter.write, uploads.BlobWriter.store

    def write_spy(self: Any, data: memoryview) -> None:
        written[0] += len(data)
        write(self, data)

    def store_spy(self: Any, **kwargs: Any) -> Any:
        stored = store(self, **kwargs)
        hashed.append(stored.sha256)
        return stored

    monkeypatch.setattr(uploads.BlobWriter, "write", write_spy)
    monkeypatch.setattr(uploads.BlobWriter, "store", store_spy)
    assert create(clients["member"]).status_code == 201
    files = folder_bytes(folder)
    response = upload(clients["member"], "ticket-router", files)
    # Each file was hashed as it arrived (one pass: every byte written once), then moved into the store.
    assert sorted(hashed) == sorted(hashlib.sha256(d).hexdigest() for d in files.values())
    assert written[0] == sum(len(d) for d in files.values())
    assert not [p for p in artifact_store.parent.joinpath("tmp").rglob("*") if p.is_file()]
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["version"] == 1
    assert body["status"] == VersionStatus.READY
    assert body["family"] == "sequence-classifier"
    assert {f["name"]: f["sha256"] for f in body["files"]} == {
        n: hashlib.sha256(d).hexdigest() for n, d in files.items()
    }
    assert body["intake"]["labels"] == LABELS
    assert body["intake"]["architectures"] == ["BertForSequenceClassification"]
    model = RegisteredModel.objects.get(slug="ticket-router")
    assert model.license == "mit"
    assert model.result_kind.path == "classification/multiclass"
    # Searchable by what was read from its config.
    found = clients["anonymous"].get("/api/v1/models/", {"q": "BertForSequenceClassification"}).json()
    assert [m["slug"] for m in found["results"]] == ["ticket-router"]
    # Licence and tags from the card are facets and filters.
    anonymous = clients["anonymous"]
    assert {"value": "mit", "count": 1} in found["facets"]["license"]
    assert {"value": "tickets", "count": 1} in found["facets"]["tag"]
    assert anonymous.get("/api/v1/models/", {"license": "mit"}).json()["count"] == 1
    assert anonymous.get("/api/v1/models/", {"license": "gpl-3.0"}).json()["count"] == 0
    assert anonymous.get("/api/v1/models/", {"tag": "tickets"}).json()["count"] == 1
    assert anonymous.get("/api/v1/models/", {"tag": "images"}).json()["count"] == 0
    page = anonymous.get("/", {"tag": "tickets"}).content.decode()
    assert 'data-facet="license"' in page
    assert 'data-slug="ticket-router"' in page


@pytest.mark.parametrize(("who", "expected"), [("viewer", 403), ("member", 201), ("maintainer", 201)])
def test_upload_route_by_role(clients: dict[str, APIClient], folder: Path, who: str, expected: int) -> None:
    assert create(clients["maintainer"], visibility="private").status_code == 201
    assert upload(clients[who], "ticket-router", folder_bytes(folder)).status_code == expected


def test_private_model_is_404_like_a_missing_one(clients: dict[str, APIClient], folder: Path) -> None:
    assert create(clients["member"], visibility="private").status_code == 201
    hidden = upload(clients["outsider"], "ticket-router", folder_bytes(folder))
    missing = upload(clients["outsider"], "no-such-model", folder_bytes(folder))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content
    for path in ("aliases/", "lifecycle/"):
        a = clients["outsider"].post(f"/api/v1/models/ticket-router/{path}", {"state": "archived"}, format="json")
        b = clients["outsider"].post(f"/api/v1/models/no-such-model/{path}", {"state": "archived"}, format="json")
        assert a.status_code == b.status_code == 404
        assert a.content == b.content


def test_pickle_upload_refused_and_nothing_stored(
    clients: dict[str, APIClient], folder: Path, artifact_store: Path
) -> None:
    assert create(clients["member"]).status_code == 201
    files = folder_bytes(folder)
    files.pop("model.safetensors")
    files["pytorch_model.bin"] = b"\x80\x04\x95 a pickle"
    response = upload(clients["member"], "ticket-router", files)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "unprocessable"
    assert "pickle" in " ".join(body["errors"]["files"])
    assert not ModelVersion.objects.exists()
    assert not [p for p in artifact_store.rglob("*") if p.is_file()]
    assert not [p for p in artifact_store.parent.joinpath("tmp").rglob("*") if p.is_file()]  # no temporary files


@pytest.mark.parametrize("name", ["../config.json", "sub/config.json", "..\\config.json"])
def test_traversal_names_refused(clients: dict[str, APIClient], folder: Path, name: str) -> None:
    assert create(clients["member"]).status_code == 201
    files = folder_bytes(folder)
    files[name] = files.pop("config.json")
    response = upload_raw(clients["member"], "ticket-router", files)
    assert response.status_code == 422
    assert "config.json" in " ".join(response.json()["errors"]["files"])
    assert not ModelVersion.objects.exists()
    # The same folder with plain names is accepted (the refusal was the name).
    files["config.json"] = files.pop(name)
    assert upload_raw(clients["member"], "ticket-router", files).status_code == 201


def test_too_large_refused_by_content_length(clients: dict[str, APIClient], folder: Path, settings: Any) -> None:
    settings.MODEL_MAX_BYTES = 1000
    assert create(clients["member"]).status_code == 201
    response = upload(clients["member"], "ticket-router", folder_bytes(folder))
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_a_broken_body_is_a_json_400_and_stores_nothing(
    clients: dict[str, APIClient], folder: Path, artifact_store: Path
) -> None:
    """A body cut short (no closing boundary) after whole files were stored:
    those files are discarded again; the answer is the API's error shape."""
    assert create(clients["member"]).status_code == 201
    boundary = "----cut-short"
    files = folder_bytes(folder)
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n\r\n'.encode()
        + data
        + b"\r\n"
        for name, data in files.items()
    )
    response = clients["member"].generic(
        "POST",
        "/api/v1/models/ticket-router/versions/",
        body + b"--" + boundary.encode() + b'\r\nContent-Disposition: form-data; name="files"; filename="x"\r\n\r\nab',
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "parse_error"
    assert "closing boundary" in response.json()["detail"]
    assert not ModelVersion.objects.exists()
    assert not [p for p in artifact_store.rglob("*") if p.is_file()]
    assert not [p for p in artifact_store.parent.joinpath("tmp").rglob("*") if p.is_file()]


def test_a_body_that_is_not_multipart_is_415(clients: dict[str, APIClient]) -> None:
    assert create(clients["member"]).status_code == 201
    response = clients["member"].post("/api/v1/models/ticket-router/versions/", {"files": []}, format="json")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_promotion_route_by_role_and_gate(clients: dict[str, APIClient], folder: Path) -> None:
    assert create(clients["member"]).status_code == 201
    assert upload(clients["member"], "ticket-router", folder_bytes(folder)).status_code == 201
    url = "/api/v1/models/ticket-router/aliases/"
    expected = {"anonymous": 401, "viewer": 403, "member": 403, "outsider": 403, "maintainer": 200}
    for who, code in expected.items():
        response = clients[who].post(url, {"alias": "production", "version": 1}, format="json")
        assert response.status_code == code, (who, response.content)
    assert Alias.objects.get(name="production").version.version == 1
    version_id = ModelVersion.objects.get(version=1).pk
    compile_url = f"/api/v1/versions/{version_id}/compile/"
    assert clients["viewer"].post(compile_url).status_code == 403  # viewers only look
    assert clients["member"].post(compile_url).status_code == 202
    ModelVersion.objects.filter(version=1).update(status=VersionStatus.BELOW_GATE)
    refused = clients["maintainer"].post(url, {"alias": "staging", "version": 1}, format="json")
    assert refused.status_code == 422
    assert "below the quality gate" in refused.json()["detail"] + str(refused.json()["errors"])
    assert clients["member"].delete(f"{url}production/").status_code == 403
    assert clients["maintainer"].delete(f"{url}production/").status_code == 204
    assert clients["maintainer"].delete(f"{url}production/").status_code == 404
    assert not Alias.objects.exists()


def test_deprecate_hides_from_search_but_resolves(clients: dict[str, APIClient], folder: Path) -> None:
    assert create(clients["member"]).status_code == 201
    assert upload(clients["member"], "ticket-router", folder_bytes(folder)).status_code == 201
    url = "/api/v1/models/ticket-router/lifecycle/"
    assert clients["member"].post(url, {"state": "deprecated"}, format="json").status_code == 403
    response = clients["maintainer"].post(url, {"state": "deprecated", "reason": "use v2"}, format="json")
    assert response.status_code == 200
    assert response.json()["state"] == Lifecycle.DEPRECATED
    found = clients["member"].get("/api/v1/models/", {"q": "ticket"}).json()
    assert found["count"] == 0
    assert clients["member"].get("/api/v1/models/ticket-router/").status_code == 200
    restored = clients["maintainer"].post(url, {"state": "active"}, format="json")
    assert restored.status_code == 200
    assert clients["member"].get("/api/v1/models/", {"q": "ticket"}).json()["count"] == 1


def test_card_edit_route_by_role(clients: dict[str, APIClient]) -> None:
    assert create(clients["member"]).status_code == 201
    url = "/api/v1/models/ticket-router/card/"
    card = {"card": "---\nlicense: apache-2.0\n---\n# Hi <script>x</script>"}
    assert clients["member"].put(url, card, format="json").status_code == 403
    response = clients["maintainer"].put(url, card, format="json")
    assert response.status_code == 200
    assert response.json()["license"] == "apache-2.0"


def test_schema_documents_registration_routes(clients: dict[str, APIClient]) -> None:
    schema = clients["anonymous"].get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    assert "post" in paths["/api/v1/models/"]
    assert "201" in paths["/api/v1/models/{slug}/versions/"]["post"]["responses"]
    assert "409" in paths["/api/v1/models/"]["post"]["responses"]
