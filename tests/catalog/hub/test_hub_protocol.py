"""The Hub routes at the HTTP level: the headers and error codes
``huggingface_hub`` relies on, Range, LFS uploads, roles and invisibility."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from catalog.hub.selectors import version_commit_id
from catalog.models import RegisteredModel, Visibility
from catalog.storage import artifact_exists, artifact_open
from tests.catalog.hub.conftest import Member

pytestmark = pytest.mark.django_db


def bearer(member: Member | None) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {member.token}"} if member else {}


@pytest.fixture
def alice(make_member: Callable[..., Member]) -> Member:
    return make_member("alice", "Team A")


@pytest.fixture
def model(make_model: Callable[..., Any], alice: Member) -> RegisteredModel:
    return make_model("Router", team=alice.user.teams.get())


def weights_of(model: RegisteredModel) -> dict[str, Any]:
    assert model.latest_version is not None
    return next(f for f in model.latest_version.files if f["name"] == "model.safetensors")


def test_resolve_head_carries_what_the_client_checks(client: Client, model: RegisteredModel) -> None:
    entry = weights_of(model)
    response = client.head("/hf/team-a/router/resolve/main/model.safetensors")
    assert response.status_code == 200
    assert response["X-Repo-Commit"] == version_commit_id(model.latest_version)  # type: ignore[arg-type]
    assert response["ETag"] == f'"{entry["sha256"]}"'
    assert response["X-Linked-Etag"] == f'"{entry["sha256"]}"'
    assert response["X-Linked-Size"] == response["Content-Length"] == str(entry["size"])
    assert "Location" not in response
    assert "X-Xet-Hash" not in response
    assert response["Content-Disposition"].startswith('attachment; filename="model.safetensors"')
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.content == b""


def test_resolve_serves_ranges(client: Client, model: RegisteredModel) -> None:
    entry = weights_of(model)
    with artifact_open(entry["sha256"]) as fh:
        data = fh.read()
    full = client.get("/hf/team-a/router/resolve/v1/model.safetensors")
    assert full.status_code == 200
    assert b"".join(full.streaming_content) == data
    part = client.get("/hf/team-a/router/resolve/v1/model.safetensors", HTTP_RANGE="bytes=3-")
    assert part.status_code == 206
    assert b"".join(part.streaming_content) == data[3:]  # type: ignore[attr-defined]
    assert part["Content-Range"] == f"bytes 3-{len(data) - 1}/{len(data)}"
    assert part["Content-Length"] == str(len(data) - 3)
    past = client.get("/hf/team-a/router/resolve/v1/model.safetensors", HTTP_RANGE=f"bytes={len(data)}-")
    assert past.status_code == 416
    assert past["Content-Range"] == f"bytes */{len(data)}"


def test_revisions_main_version_alias_and_commit_id(client: Client, model: RegisteredModel) -> None:
    from catalog.services.registry import alias_set

    version = model.latest_version
    assert version is not None
    alias_set(registered_model=model, name="staging", version=version)
    commit = version_commit_id(version)
    for revision in ("main", "v1", "staging", commit):
        info = client.get(f"/hf/api/models/team-a/router/revision/{revision}")
        assert info.status_code == 200, revision
        assert info.json()["sha"] == commit
        assert [s["rfilename"] for s in info.json()["siblings"]] == ["model.safetensors"]
    pull_request = client.get("/hf/api/models/team-a/router/revision/refs%2Fpr%2F1")
    assert (pull_request.status_code, pull_request["X-Error-Code"]) == (404, "RevisionNotFound")
    for revision in ("v2", "production", "0" * 40):
        missing = client.head(f"/hf/team-a/router/resolve/{revision}/model.safetensors")
        assert (missing.status_code, missing["X-Error-Code"]) == (404, "RevisionNotFound"), revision


def test_paths_info_lists_the_paths_that_exist(client: Client, model: RegisteredModel) -> None:
    entry = weights_of(model)
    response = client.post(
        "/hf/api/models/team-a/router/paths-info/main", data={"paths": ["model.safetensors", "missing.json"]}
    )
    assert response.status_code == 200
    assert [(e["path"], e["lfs"]["oid"], e["size"]) for e in response.json()] == [
        ("model.safetensors", entry["sha256"], entry["size"])
    ]


def test_a_missing_file_is_entry_not_found_with_the_commit(client: Client, model: RegisteredModel) -> None:
    response = client.head("/hf/team-a/router/resolve/main/adapter_config.json")
    assert response.status_code == 404
    assert response["X-Error-Code"] == "EntryNotFound"
    assert response["X-Repo-Commit"] == version_commit_id(model.latest_version)  # type: ignore[arg-type]


def test_tree_pages_follow_link_headers(client: Client, model: RegisteredModel, settings: Any) -> None:
    from catalog.services.registry import model_version_create, model_version_finish
    from catalog.storage import artifact_put

    settings.HUB_TREE_PAGE_SIZE = 2
    files = []
    for name in ("a.json", "b.json", "c.json", "model.safetensors", "vocab.txt"):
        stored = artifact_put(io.BytesIO(name.encode() * 10))
        files.append({"name": name, "sha256": stored.sha256, "size": stored.size})
    version = model_version_finish(version=model_version_create(registered_model=model, family="x", files=files))
    url: str | None = f"/hf/api/models/team-a/router/tree/{version_commit_id(version)}?recursive=true&expand=false"
    seen = []
    while url:
        page = client.get(url)
        assert page.status_code == 200
        assert len(page.json()) <= 2
        seen += page.json()
        link = page.headers.get("Link")
        url = re.match(r'<http://testserver(.+)>; rel="next"', link).group(1) if link else None  # type: ignore[union-attr]
    assert [e["path"] for e in seen] == ["a.json", "b.json", "c.json", "model.safetensors", "vocab.txt"]
    first = seen[0]
    assert first["type"] == "file"
    assert first["lfs"]["oid"] == files[0]["sha256"]
    assert first["size"] == files[0]["size"]
    assert re.fullmatch(r"[0-9a-f]{40}", first["oid"])


def test_private_repo_answers_exactly_like_a_missing_one(
    client: Client, make_model: Callable[..., Any], alice: Member, make_member: Callable[..., Member]
) -> None:
    make_model("Secret", team=alice.user.teams.get(), visibility=Visibility.PRIVATE)
    bob = make_member("bob", "Team B")
    routes = [
        ("get", "/hf/api/models/team-a/{}", None),
        ("get", "/hf/api/models/team-a/{}/revision/main", None),
        ("get", "/hf/api/models/team-a/{}/tree/main?recursive=true", None),
        ("head", "/hf/team-a/{}/resolve/main/model.safetensors", None),
        ("get", "/hf/team-a/{}/resolve/main/model.safetensors", None),
        ("get", "/hf/api/models/team-a/{}/xet-write-token/main", None),
        ("get", "/hf/api/models/team-a/{}/xet-read-token/main", None),
        ("post", "/hf/api/models/team-a/{}/paths-info/main", {"paths": ["model.safetensors"]}),
        ("post", "/hf/api/models/team-a/{}/preupload/main", {"files": []}),
        ("post", "/hf/team-a/{}.git/info/lfs/objects/batch", {"operation": "upload", "objects": []}),
        ("post", "/hf/api/models/team-a/{}/commit/main", None),
        ("get", "/hf/team-a/{}", None),
    ]
    for who in (bob, None):
        for method, template, body in routes:
            answers = []
            for name in ("secret", "no-such-model"):
                kwargs: dict[str, Any] = bearer(who)
                if body is not None:
                    kwargs.update(data=json.dumps(body), content_type="application/json")
                response = getattr(client, method)(template.format(name), **kwargs)
                answers.append(
                    (
                        response.status_code,
                        response.get("X-Error-Code"),
                        response.get("X-Error-Message"),
                        response.content,
                    )
                )
            assert answers[0] == answers[1], (template, who)
            assert answers[0][:2] == (404, "RepoNotFound"), (template, answers[0])
    own = client.get("/hf/api/models/team-a/secret", **bearer(alice))
    assert own.status_code == 200
    assert own.json()["private"] is True


def test_a_bad_token_is_401_with_the_message_the_client_reads(client: Client, model: RegisteredModel) -> None:
    response = client.get("/hf/api/models/team-a/router", HTTP_AUTHORIZATION="Bearer mlk_not-a-real-token")
    assert response.status_code == 401
    assert response["X-Error-Message"] == "Invalid credentials in Authorization header"


def _lfs_batch(client: Client, member: Member | None, data: bytes) -> Any:
    body = {
        "operation": "upload",
        "transfers": ["basic", "multipart"],
        "objects": [{"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}],
        "hash_algo": "sha256",
        "ref": {"name": "main"},
    }
    return client.post(
        "/hf/team-a/router.git/info/lfs/objects/batch",
        data=json.dumps(body),
        content_type="application/vnd.git-lfs+json",
        **bearer(member),
    )


def test_lfs_upload_is_verified_before_it_is_stored(client: Client, model: RegisteredModel, alice: Member) -> None:
    data = b"safetensors bytes " * 5000
    sha = hashlib.sha256(data).hexdigest()
    batch = _lfs_batch(client, alice, data)
    assert batch.status_code == 200
    href = batch.json()["objects"][0]["actions"]["upload"]["href"]
    path = href.removeprefix("http://testserver")
    # Other bytes of the same length: refused, nothing stored.
    wrong = client.put(path, data=b"X" * len(data), content_type="application/octet-stream")
    assert wrong.status_code == 400
    assert not artifact_exists(sha)
    # A forged grant.
    assert client.put(path[:-3] + "abc", data=data, content_type="application/octet-stream").status_code == 403
    # The announced bytes: stored under their sha256; a second batch skips them.
    ok = client.put(path, data=data, content_type="application/octet-stream")
    assert ok.status_code == 200
    assert artifact_exists(sha)
    again = _lfs_batch(client, alice, data)
    assert "actions" not in again.json()["objects"][0]


def test_writes_need_the_member_role(
    client: Client, model: RegisteredModel, make_member: Callable[..., Member]
) -> None:
    viewer = make_member("victor", "Team A", role="viewer")
    assert _lfs_batch(client, viewer, b"x").status_code == 403
    assert _lfs_batch(client, None, b"x").status_code == 401
    preupload = client.post(
        "/hf/api/models/team-a/router/preupload/main",
        data=json.dumps({"files": [{"path": "config.json", "size": 2, "sample": base64.b64encode(b"{}").decode()}]}),
        content_type="application/json",
        **bearer(viewer),
    )
    assert preupload.status_code == 403
    create = client.post(
        reverse("hub:repo_create"),
        data=json.dumps({"name": "other", "organization": "team-a", "type": "model"}),
        content_type="application/json",
        **bearer(viewer),
    )
    assert create.status_code == 403
    assert not RegisteredModel.objects.filter(slug="other").exists()


def test_preupload_modes_and_refusals(client: Client, model: RegisteredModel, alice: Member) -> None:
    def preupload(files: list[dict[str, Any]]) -> Any:
        return client.post(
            "/hf/api/models/team-a/router/preupload/main",
            data=json.dumps({"files": files}),
            content_type="application/json",
            **bearer(alice),
        )

    sample = base64.b64encode(b'{"a": 1}').decode()
    binary = base64.b64encode(b"\x08\x00\x00\x00\x00\x00\x00\x00{").decode()
    modes = preupload(
        [
            {"path": "config.json", "size": 8, "sample": sample},
            {"path": "model.safetensors", "size": 4000, "sample": binary},
        ]
    )
    assert modes.status_code == 200
    assert [(f["path"], f["uploadMode"], f["shouldIgnore"]) for f in modes.json()["files"]] == [
        ("config.json", "regular", False),
        ("model.safetensors", "lfs", False),
    ]
    hidden = preupload([{"path": ".gitattributes", "size": 8, "sample": sample}])
    assert hidden.json()["files"][0]["shouldIgnore"] is True
    pickle = preupload([{"path": "pytorch_model.bin", "size": 4000, "sample": binary}])
    assert pickle.status_code == 400
    assert "pickle" in pickle["X-Error-Message"]
    nested = preupload([{"path": "../etc/passwd", "size": 4, "sample": sample}])
    assert nested.status_code == 400
    on_a_version = client.post(
        "/hf/api/models/team-a/router/preupload/v1",
        data=json.dumps({"files": []}),
        content_type="application/json",
        **bearer(alice),
    )
    assert on_a_version.status_code == 400


def test_a_refused_commit_stores_nothing(client: Client, model: RegisteredModel, alice: Member) -> None:
    card = b"# Router\n"
    lines = [
        {"key": "header", "value": {"summary": "x", "description": ""}},
        {
            "key": "file",
            "value": {"path": "README.md", "content": base64.b64encode(card).decode(), "encoding": "base64"},
        },
        {"key": "lfsFile", "value": {"path": "model.safetensors", "algo": "sha256", "oid": "ab" * 32, "size": 3}},
    ]
    response = client.post(
        "/hf/api/models/team-a/router/commit/main",
        data=b"".join(json.dumps(line).encode() + b"\n" for line in lines),
        content_type="application/x-ndjson",
        **bearer(alice),
    )
    assert response.status_code == 400
    assert "was not uploaded" in response.json()["error"]
    assert model.versions.count() == 1
    assert not artifact_exists(hashlib.sha256(card).hexdigest())  # the inline file stored on the way is gone


def test_xet_token_routes_redirect_to_a_url_that_names_the_fix(client: Client, model: RegisteredModel) -> None:
    response = client.get("/hf/api/models/team-a/router/xet-write-token/main")
    assert response.status_code == 307
    assert "HF_HUB_DISABLE_XET=1" in response["Location"]
    target = client.get(response["Location"])
    assert target.status_code == 400
    assert "HF_HUB_DISABLE_XET=1" in target["X-Error-Message"]
