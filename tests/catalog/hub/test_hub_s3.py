"""The Hub routes with the artifact store on S3 (moto's server on loopback):
LFS uploads land in the bucket, downloads redirect to a presigned URL that
carries no Authorization (the client drops it for another host)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from catalog.hub.selectors import version_commit_id
from catalog.storage import artifact_exists
from tests.catalog.hub.conftest import Member
from tests.catalog.test_s3_storage import moto_endpoint, s3  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def test_lfs_upload_and_download_on_s3(
    s3: str,  # noqa: F811 - the fixture
    client: Client,
    make_member: Callable[..., Member],
    make_model: Callable[..., Any],
) -> None:
    import requests

    alice = make_member("alice")
    model = make_model("Router", team=alice.user.teams.get())
    data = os.urandom(200_000)
    sha = hashlib.sha256(data).hexdigest()
    batch = client.post(
        "/hf/team-a/router.git/info/lfs/objects/batch",
        data=json.dumps({"operation": "upload", "objects": [{"oid": sha, "size": len(data)}]}),
        content_type="application/vnd.git-lfs+json",
        HTTP_AUTHORIZATION=f"Bearer {alice.token}",
    )
    href = batch.json()["objects"][0]["actions"]["upload"]["href"].removeprefix("http://testserver")
    assert client.put(href, data=data, content_type="application/octet-stream").status_code == 200
    assert artifact_exists(sha)

    entry = model.latest_version.files[0]
    head = client.head(f"/hf/team-a/router/resolve/main/{entry['name']}")
    assert head.status_code == 200  # HEAD answers the metadata itself: no absolute redirect
    assert head["X-Linked-Size"] == str(entry["size"])
    got = client.get(f"/hf/team-a/router/resolve/main/{entry['name']}")
    assert got.status_code == 302
    assert got["Location"].startswith(s3)
    assert got["X-Repo-Commit"] == version_commit_id(model.latest_version)
    assert got["X-Linked-Etag"] == f'"{entry["sha256"]}"'
    fetched = requests.get(got["Location"], timeout=30)
    assert hashlib.sha256(fetched.content).hexdigest() == entry["sha256"]
    assert "attachment" in fetched.headers["Content-Disposition"]
