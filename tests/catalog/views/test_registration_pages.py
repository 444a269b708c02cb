"""Registration pages: register from the web, the card never renders a
script, maintainer controls, team and profile pages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from catalog.models import Alias, ApiToken, Lifecycle, ModelVersion, RegisteredModel
from catalog.roles import Role, user_role
from catalog.services.registration import model_card_update, model_register, version_register
from catalog.services.teams import membership_set
from tests.registration_folders import LABELS, make_hf_folder, put_folder

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hf_folder(tmp_path_factory.mktemp("bert"), kind="bert")


@pytest.fixture
def people(taxonomy: None, make_team: Callable[..., Any], make_user: Callable[..., Any]) -> dict[str, Any]:
    team = make_team("Team A")
    out: dict[str, Any] = {"team": team}
    for role in Role:
        user = make_user(role.value)
        membership_set(team=team, user=user, role=role)
        out[role.value] = user
    return out


def login(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_register_from_the_web_page(people: dict[str, Any], folder: Path) -> None:
    client = login(people["member"])
    page = client.get("/register/")
    assert page.status_code == 200
    assert b"webkitdirectory" in page.content
    assert b"<script>" not in page.content  # the page's script is a static file (CSP)
    parts = [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]
    read = client.post("/register/upload/", {"files": parts}, HTTP_X_REQUESTED_WITH="XMLHttpRequest")
    assert read.status_code == 200
    html = read.content.decode()
    assert "sequence-classifier" in html
    for label in LABELS:
        assert label in html
    assert 'value="classification/multiclass" selected' in html
    token = read.context["token"]
    done = client.post(
        "/register/confirm/",
        {
            "token": token,
            "name": "Web router",
            "team": "team-a",
            "visibility": "private",
            "modality": "text/natural-language/english",
            "result": "classification/multiclass",
            "domain": "general/news",
        },
    )
    assert done.status_code == 302
    model = RegisteredModel.objects.get(slug="web-router")
    assert model.domain.path == "general/news"
    assert model.versions.get().labels == LABELS
    # The pending upload is used up.
    assert client.post("/register/confirm/", {"token": token, "name": "Again", "team": "team-a"}).status_code == 302
    assert RegisteredModel.objects.count() == 1


def test_viewer_cannot_register_from_the_web(people: dict[str, Any], folder: Path) -> None:
    client = login(people["viewer"])
    assert b"not a member of any team" in client.get("/register/").content
    parts = [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]
    read = client.post("/register/upload/", {"files": parts}, HTTP_X_REQUESTED_WITH="XMLHttpRequest")
    response = client.post("/register/confirm/", {"token": read.context["token"], "name": "X", "team": "team-a"})
    assert response.status_code == 400
    assert not RegisteredModel.objects.exists()


def test_pickle_folder_refused_on_the_page(people: dict[str, Any], artifact_store: Path) -> None:
    client = login(people["member"])
    parts = [SimpleUploadedFile("config.json", b"{}"), SimpleUploadedFile("pytorch_model.bin", b"pickle")]
    response = client.post("/register/upload/", {"files": parts}, HTTP_X_REQUESTED_WITH="XMLHttpRequest")
    assert response.status_code == 400
    assert b"nothing was stored" in response.content
    assert not [p for p in artifact_store.rglob("*") if p.is_file()]


def test_card_script_never_rendered_and_maintainer_controls(people: dict[str, Any], folder: Path) -> None:
    model = model_register(user=people["member"], team=people["team"], name="Carded", visibility="internal")
    version_register(user=people["member"], registered_model=model, files=put_folder(folder))
    model_card_update(
        user=people["maintainer"],
        registered_model=model,
        card="---\nlicense: mit\n---\n# Title\n<script>alert('x')</script>\n<img src=x onerror=alert(1)>\n[a](javascript:alert(1))",
    )
    for who in ("member", "maintainer"):
        html = login(people[who]).get("/models/carded/").content.decode()
        assert "<h1>Title</h1>" in html
        assert "<script>alert" not in html
        assert "onerror=alert" not in html.replace("&lt;img src=x onerror=alert(1)&gt;", "")
        assert 'href="javascript:' not in html
        assert "licence: mit" in html
        assert ("promote-form" in html) is (who == "maintainer")
    maintainer = login(people["maintainer"])
    assert maintainer.post("/models/carded/aliases/", {"alias": "production", "version": "1"}).status_code == 302
    assert Alias.objects.get(name="production").version.version == 1
    login(people["member"]).post("/models/carded/lifecycle/", {"state": "archived"})
    assert RegisteredModel.objects.get(slug="carded").lifecycle == Lifecycle.ACTIVE
    maintainer.post("/models/carded/lifecycle/", {"state": "deprecated", "reason": "old"})
    html = maintainer.get("/models/carded/").content.decode()
    assert 'data-lifecycle="deprecated"' in html
    assert "promoted" in html  # the audit log
    assert login(people["member"]).get("/models/carded/card/").status_code == 403
    assert maintainer.post("/models/carded/card/", {"card": "# New"}).status_code == 302
    assert RegisteredModel.objects.get(slug="carded").card == "# New"
    assert ModelVersion.objects.count() == 1


def test_team_page_roles(people: dict[str, Any], make_user: Callable[..., Any]) -> None:
    make_user("newbie")
    assert login(make_user("stranger")).get("/teams/team-a/").status_code == 404
    member = login(people["member"])
    assert b"data-member" in member.get("/teams/team-a/").content
    member.post("/teams/team-a/members/", {"username": "newbie", "role": "member"})
    assert user_role(people["member"].__class__.objects.get(username="newbie"), people["team"]) is None
    login(people["maintainer"]).post("/teams/team-a/members/", {"username": "newbie", "role": "viewer"})
    assert user_role(people["member"].__class__.objects.get(username="newbie"), people["team"]) == Role.VIEWER


def test_profile_tokens_shown_once_and_revoked(people: dict[str, Any]) -> None:
    client = login(people["member"])
    response = client.post("/profile/", {"name": "laptop"})
    key = response.context["new_key"]
    assert key.encode() in response.content
    assert response["Cache-Control"] == "no-store"
    assert key.encode() not in client.get("/profile/").content
    token = ApiToken.objects.get(name="laptop")
    assert token.key_sha256 != key
    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/models/").status_code == 200
    client.post("/profile/", {"action": "revoke", "token": token.pk})
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/models/").status_code == 401
    other = login(people["viewer"])
    other.post("/profile/", {"action": "revoke", "token": token.pk})  # not theirs: nothing happens


def test_upload_keeps_csrf_and_leaves_no_temporary_files(people: dict[str, Any], folder: Path, settings: Any) -> None:
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(people["member"])
    parts = [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]
    assert csrf_client.post("/register/upload/", {"files": parts}).status_code == 403
    client = login(people["member"])
    parts = [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]
    assert client.post("/register/upload/", {"files": parts}, HTTP_X_REQUESTED_WITH="XMLHttpRequest").status_code == 200
    refused = [SimpleUploadedFile("config.json", b"{}"), SimpleUploadedFile("model.pt", b"pickle")]
    assert (
        client.post("/register/upload/", {"files": refused}, HTTP_X_REQUESTED_WITH="XMLHttpRequest").status_code == 400
    )
    assert not list(Path(settings.ARTIFACT_TMP_DIR).iterdir())


def test_delete_is_maintainer_only_and_audited(people: dict[str, Any], folder: Path) -> None:
    from catalog.models import AuditAction, AuditEvent

    model = model_register(user=people["member"], team=people["team"], name="Doomed", visibility="internal")
    version_register(user=people["member"], registered_model=model, files=put_folder(folder))
    login(people["member"]).post("/models/doomed/delete/")
    assert RegisteredModel.objects.filter(slug="doomed").exists()
    response = login(people["maintainer"]).post("/models/doomed/delete/")
    assert response.status_code == 302
    assert response["Location"] == "/teams/team-a/"
    assert not RegisteredModel.objects.filter(slug="doomed").exists()
    event = AuditEvent.objects.get(action=AuditAction.DELETED)
    assert event.subject == "doomed"
    assert event.actor == people["maintainer"]
