"""The API's lineage follows the page's rule: what a viewer may not see is not named."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from catalog.models import ModelVersion, Visibility
from tests.catalog.api.tokens import client_for

pytestmark = pytest.mark.django_db


def test_a_private_base_is_not_named_to_other_teams(make_model: Any, make_team: Any, make_user: Any) -> None:
    team_a = make_team("Team A")
    base = make_model("Secret encoder", team=team_a, visibility=Visibility.PRIVATE)
    child = make_model("Public router", team=team_a, visibility=Visibility.INTERNAL)
    ModelVersion.objects.filter(pk=child.latest_version.pk).update(base_version=base.latest_version)

    def lineage(client: APIClient) -> dict[str, Any]:
        body = client.get("/api/v1/models/public-router/").json()
        return body["versions"][0]["lineage"]

    hidden = {"model": None, "version": None, "private": True}
    assert lineage(APIClient())["base"] == hidden
    assert lineage(client_for(make_user("bob", make_team("Team B"))))["base"] == hidden
    assert lineage(client_for(make_user("alice", team_a)))["base"] == {
        "model": "secret-encoder",
        "version": 1,
        "private": False,
    }
    assert b"secret-encoder" not in APIClient().get("/api/v1/models/public-router/").content
