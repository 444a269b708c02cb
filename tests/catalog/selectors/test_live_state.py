"""The generation token announced by PostgreSQL (catalog/selectors/live_state.py):
a committed write anywhere reaches the listener, this process's own writes are
read from the database until announced, and a warm search then costs no query
for the token."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from catalog.selectors import live_state

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="LISTEN/NOTIFY: PostgreSQL only"),
]


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not announced in time"
        time.sleep(0.01)


@pytest.fixture
def listening(settings: Any) -> Iterator[None]:
    from catalog.signals import catalog_changed

    settings.CATALOG_STATE_LISTEN = True
    catalog_changed()
    live_state.known_token()  # starts the listener
    wait_for(live_state.listener_healthy)
    yield
    live_state.listener_stop()


def other_process() -> psycopg.Connection[Any]:
    params = dict(connection.get_connection_params())
    for key in ("cursor_factory", "context", "prepare_threshold", "pool", "server_side_binding"):
        params.pop(key, None)
    return psycopg.connect(**params, autocommit=True)


def test_a_write_in_another_process_is_announced(listening: None) -> None:
    with other_process() as conn:
        conn.execute("UPDATE catalog_catalogstate SET token = %s WHERE id = 1", ["b" * 32])
    wait_for(lambda: live_state.known_token() == "b" * 32)


def test_own_writes_are_read_from_the_database_until_announced(listening: None) -> None:
    from catalog.models import CatalogState
    from catalog.signals import catalog_changed

    live_state.token_written("c" * 32)  # as catalog_changed does, before its write commits
    assert live_state.known_token() is None  # callers read the database meanwhile
    CatalogState.objects.filter(pk=1).update(token="c" * 32)
    wait_for(lambda: live_state.known_token() == "c" * 32)
    token = catalog_changed()
    wait_for(lambda: live_state.known_token() == token)


def test_a_warm_search_reads_no_token(listening: None, make_model: Any, django_assert_num_queries: Any) -> None:
    from django.test import Client

    make_model("Sentiment classifier")
    client = Client()
    wait_for(lambda: live_state.known_token() is not None)
    assert client.get("/api/v1/models/?modality=text").status_code == 200
    with django_assert_num_queries(0):
        assert client.get("/api/v1/models/?modality=text").status_code == 200
    # A write is seen by the next search.
    make_model("Sentiment scorer")
    body = client.get("/api/v1/models/?modality=text").json()
    assert body["count"] == 2


def test_a_download_makes_the_detail_read_its_counters_again(
    listening: None, make_model: Any, django_assert_num_queries: Any
) -> None:
    from django.test import Client

    from catalog.models import Variant

    model = make_model("Sentiment classifier", variants=[{"precision": "fp32"}])
    client = Client()
    wait_for(lambda: live_state.known_token() is not None)
    path = f"/api/v1/models/{model.slug}/"
    assert client.get(path).status_code == 200
    with django_assert_num_queries(0):
        assert client.get(path).json()["versions"][0]["variants"][0]["download_count"] == 0
    before = live_state.downloads_generation()
    Variant.objects.filter(version__registered_model=model).update(download_count=3)
    wait_for(lambda: live_state.downloads_generation() != before)
    assert client.get(path).json()["versions"][0]["variants"][0]["download_count"] == 3


def test_listening_processes_prebuild_every_detail_document(
    listening: None, make_model: Any, django_assert_num_queries: Any
) -> None:
    from django.test import Client

    from catalog.selectors import facet_index

    models = [make_model(f"Model {i}", variants=[{"precision": "fp32"}]) for i in range(3)]
    wait_for(lambda: live_state.known_token() is not None)
    client = Client()
    assert client.get("/?q=model").status_code == 200  # the page loads the index
    index = facet_index.current()
    assert index is not None
    assert "detail" not in index.documents  # the web page builds no detail documents
    assert client.get("/api/v1/models/").status_code == 200  # an API answer starts the prebuild
    wait_for(lambda: len(index.documents.get("detail", {})) == len(models))
    for model in models:  # never requested before: served from the prebuilt documents
        with django_assert_num_queries(0):
            body = client.get(f"/api/v1/models/{model.slug}/").json()
        assert body["slug"] == model.slug
        assert body["versions"][0]["variants"][0]["download_count"] == 0


def test_a_process_without_a_listener_holds_no_pending_tokens() -> None:
    listener = live_state._Listener()  # a Celery worker or a script: never started one
    listener.written("d" * 32)
    assert listener.pending == {}
