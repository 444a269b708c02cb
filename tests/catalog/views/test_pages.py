from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from catalog.models import Visibility

pytestmark = pytest.mark.django_db


def test_catalogue_page_and_htmx_partial(client: Client, make_model: Any) -> None:
    make_model("Bird classifier", modality="image/photo/rgb")
    make_model("Text tagger", modality="text/natural-language")
    page = client.get("/", {"modality": "image"})
    body = page.content.decode()
    assert "<html" in body
    assert 'id="search-form"' in body
    assert "Bird classifier" in body
    assert "Text tagger" not in body
    partial = client.get("/", {"q": "tagger"}, HTTP_HX_REQUEST="true")
    fragment = partial.content.decode()
    assert "<html" not in fragment
    assert "Text tagger" in fragment
    assert "Bird classifier" not in fragment
    assert 'hx-swap-oob="true"' in fragment  # the form's hidden filters follow
    assert partial["Vary"].count("HX-Request") == 1


def test_bad_filters_show_a_message_not_an_error_page(client: Client, taxonomy: None) -> None:
    response = client.get("/", {"modality": "nowhere", "result": "nothing", "min_precision": "lots"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "No modality node has the path" in body
    assert "No result node has the path" in body
    assert "min_precision" in body


def test_model_page_shows_the_three_aspects(client: Client, make_model: Any) -> None:
    make_model(
        "Aspect model", modality="image/photo/rgb", result="classification/binary", domain="science/biology/ebird"
    )
    body = client.get("/models/aspect-model/").content.decode()
    for needle in (
        'id="artifact"',
        'id="intake"',
        'id="result"',
        "Image › Photo › RGB",
        "Classification › Binary",
        "Science › Biology › eBird observations",
        "mlp-classifier",
        "macro_precision",
        'id="lineage"',
    ):
        assert needle in body


def test_private_model_page_is_hidden_from_others(
    client: Client, make_model: Any, make_team: Any, make_user: Any
) -> None:
    team_a, team_b = make_team("Team A"), make_team("Team B")
    make_model("Private one", team=team_a, visibility=Visibility.PRIVATE)
    make_user("alice", team_a)
    make_user("bob", team_b)
    assert client.get("/models/private-one/").status_code == 404
    assert "Private one" not in client.get("/").content.decode()
    client.login(username="bob", password="pw-correct-horse")
    assert client.get("/models/private-one/").status_code == 404
    assert "Private one" not in client.get("/").content.decode()
    assert client.get("/models/private-one/v1/files/model.safetensors").status_code == 404
    client.login(username="alice", password="pw-correct-horse")
    assert client.get("/models/private-one/").status_code == 200
    assert "Private one" in client.get("/").content.decode()


def test_file_download_only_serves_listed_names(client: Client, make_model: Any) -> None:
    make_model("Files")
    assert client.get("/models/files/v1/files/model.safetensors").status_code == 200
    assert client.get("/models/files/v1/files/..%2F..%2Fsettings.py").status_code == 404
    assert client.get("/models/files/v1/files/config.json").status_code == 404
