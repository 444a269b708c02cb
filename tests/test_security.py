"""Request rates, the failed-authentication limit, the login lockout, error
pages, the Content-Security-Policy header and the templates it relies on."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.core.cache import caches
from django.test import Client, RequestFactory, override_settings
from django.urls import path

from modellibrary import urls as project_urls

ROOT = Path(__file__).resolve().parent.parent
MODELS = "/api/v1/models/"


@pytest.fixture(autouse=True)
def fresh_counters(db: None) -> Iterator[None]:
    caches["default"].clear()
    caches["security"].clear()
    yield
    caches["default"].clear()
    caches["security"].clear()


def assert_throttled(response: Any) -> None:
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "throttled"
    assert body["detail"]


# --- API request rates -------------------------------------------------------------------


@override_settings(API_THROTTLE_ANON="3/minute", API_THROTTLE_USER="off")
def test_anonymous_clients_are_throttled_per_address(client: Client) -> None:
    for _ in range(3):
        assert client.get(MODELS).status_code == 200
    assert_throttled(client.get(MODELS))
    # Another address has its own allowance.
    assert client.get(MODELS, REMOTE_ADDR="10.0.0.7").status_code == 200


@override_settings(API_THROTTLE_ANON="off", API_THROTTLE_USER="3/minute")
def test_users_are_throttled_per_user(make_user: Callable[..., Any]) -> None:
    alice, bob = Client(), Client()
    alice.force_login(make_user("alice"))
    bob.force_login(make_user("bob"))
    for _ in range(3):
        assert alice.get(MODELS).status_code == 200
    assert_throttled(alice.get(MODELS))
    assert bob.get(MODELS).status_code == 200  # same address, another user


def test_a_client_header_cannot_choose_its_address(client: Client) -> None:
    with override_settings(API_THROTTLE_ANON="2/minute", API_THROTTLE_USER="off"):
        for i in range(2):
            assert client.get(MODELS, HTTP_X_FORWARDED_FOR=f"10.1.0.{i}").status_code == 200
        assert_throttled(client.get(MODELS, HTTP_X_FORWARDED_FOR="10.1.0.99"))


# --- wrong API credentials ---------------------------------------------------------------------


@override_settings(AUTH_FAILURE_LIMIT=5, AUTH_FAILURE_WINDOW_S=60, API_THROTTLE_ANON="off")
def test_wrong_tokens_are_throttled_per_address(client: Client) -> None:
    codes = [client.get(MODELS, HTTP_AUTHORIZATION=f"Token wrong-{i:04d}").status_code for i in range(200)]
    assert codes[:5] == [401] * 5
    assert set(codes[5:]) == {429}
    assert_throttled(client.get(MODELS, HTTP_AUTHORIZATION="Token another-guess"))
    # Requests without credentials and other addresses go on.
    assert client.get(MODELS).status_code == 200
    assert client.get(MODELS, HTTP_AUTHORIZATION="Token wrong", REMOTE_ADDR="10.0.0.9").status_code == 401


@override_settings(AUTH_FAILURE_LIMIT=5, AUTH_FAILURE_WINDOW_S=60, API_THROTTLE_ANON="off", API_THROTTLE_USER="off")
def test_a_guess_that_lands_after_the_limit_is_no_use(client: Client, make_user: Callable[..., Any]) -> None:
    from catalog.services.tokens import api_token_create

    key = api_token_create(user=make_user("alice"), name="ci")
    assert client.get(MODELS, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    for i in range(5):
        assert client.get(MODELS, HTTP_AUTHORIZATION=f"Token guess-{i}").status_code == 401
    assert_throttled(client.get(MODELS, HTTP_AUTHORIZATION=f"Token {key}"))
    # The token's owner elsewhere is not affected.
    assert client.get(MODELS, HTTP_AUTHORIZATION=f"Token {key}", REMOTE_ADDR="10.0.0.8").status_code == 200


@override_settings(AUTH_FAILURE_LIMIT=3, AUTH_FAILURE_WINDOW_S=60, API_THROTTLE_ANON="off")
def test_the_token_limit_ends_with_its_window(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from modellibrary.security import failures

    for _ in range(3):
        client.get(MODELS, HTTP_AUTHORIZATION="Token wrong")
    blocked = client.get(MODELS, HTTP_AUTHORIZATION="Token wrong")
    assert_throttled(blocked)
    assert int(blocked["Retry-After"]) <= 60
    later = time.time() + 61
    monkeypatch.setattr(failures.time, "time", lambda: later)
    assert client.get(MODELS, HTTP_AUTHORIZATION="Token wrong").status_code == 401


# --- login page brute force ----------------------------------------------------------------------


def login(client: Client, username: str, password: str, **extra: Any) -> Any:
    return client.post("/accounts/login/", {"username": username, "password": password}, **extra)


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@override_settings(LOGIN_FAILURE_LIMIT=5, LOGIN_LOCKOUT_S=900)
def test_two_hundred_wrong_passwords_then_the_right_one_does_not_log_in(
    client: Client, make_user: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_user("alice", password="pw-correct-horse")
    for i in range(200):
        response = login(client, "alice", f"guess-{i}")
        assert response.status_code in (200, 429)
    response = login(client, "alice", "pw-correct-horse")
    assert not logged_in(client)
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 900
    assert "Too many failed attempts" in response.content.decode()
    # The admin's login is the same password check: locked too.
    client.post("/admin/login/", {"username": "alice", "password": "pw-correct-horse"})
    assert not logged_in(client)
    # The user is not locked out from everywhere: another address logs in.
    other = Client(REMOTE_ADDR="10.0.0.42")
    assert login(other, "alice", "pw-correct-horse").status_code == 302
    assert logged_in(other)
    # After the lockout the right password works again.
    import time

    from modellibrary.security import failures

    later = time.time() + 901
    monkeypatch.setattr(failures.time, "time", lambda: later)
    assert login(client, "alice", "pw-correct-horse").status_code == 302
    assert logged_in(client)


@override_settings(LOGIN_FAILURE_LIMIT=5, LOGIN_IP_FAILURE_LIMIT=20)
def test_password_spraying_from_one_address_locks_that_address(client: Client, make_user: Callable[..., Any]) -> None:
    make_user("alice", password="pw-correct-horse")
    for i in range(20):  # a few guesses each over many usernames: no username reaches its limit
        login(client, f"user{i // 2}", f"guess-{i}")
    response = login(client, "alice", "pw-correct-horse")
    assert response.status_code == 429
    assert not logged_in(client)
    other = Client(REMOTE_ADDR="10.0.0.43")
    assert login(other, "alice", "pw-correct-horse").status_code == 302


def test_many_distinct_failures_do_not_evict_a_lock(settings: Any) -> None:
    options = settings.CACHES["security"].get("OPTIONS", {})
    assert options.get("MAX_ENTRIES", 300) >= 100_000


@override_settings(LOGIN_FAILURE_LIMIT=5)
def test_a_success_resets_the_count(client: Client, make_user: Callable[..., Any]) -> None:
    make_user("alice", password="pw-correct-horse")
    for _ in range(2):
        for i in range(4):
            assert login(client, "alice", f"guess-{i}").status_code == 200
        assert login(client, "alice", "pw-correct-horse").status_code == 302
        client.logout()


def test_the_login_page_says_why_and_keeps_next(client: Client, make_user: Callable[..., Any]) -> None:
    make_user("alice", password="pw-correct-horse")
    page = client.get("/accounts/login/?next=/models/x/").content.decode()
    assert 'name="next" value="/models/x/"' in page
    assert "Log in to continue" in page
    wrong = login(client, "alice", "nope")
    assert "Please enter a correct username and password" in wrong.content.decode()
    ok = client.post("/accounts/login/", {"username": "alice", "password": "pw-correct-horse", "next": "/models/x/"})
    assert ok.status_code == 302
    assert ok["Location"] == "/models/x/"


def test_login_refuses_an_external_next(client: Client, make_user: Callable[..., Any]) -> None:
    make_user("alice", password="pw-correct-horse")
    for target in ("https://evil.example/", "//evil.example/x", "http://testserver.evil.example/"):
        client.logout()
        r = client.post("/accounts/login/", {"username": "alice", "password": "pw-correct-horse", "next": target})
        assert (r.status_code, r["Location"]) == (302, "/"), target


# --- error pages ----------------------------------------------------------------------------------


def test_an_unknown_page_is_the_branded_404_without_url_patterns(client: Client) -> None:
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Page not found" in page
    assert "Model Library" in page
    assert "favicon.svg" in page
    assert "URLconf" not in page
    assert "URL patterns" not in page
    assert "Traceback" not in page
    assert "admin/" not in page
    assert "&lt;slug:slug&gt;" not in page


def test_the_500_page_is_standalone(django_assert_num_queries: Any) -> None:
    from django.views.defaults import server_error

    with django_assert_num_queries(0):
        response = server_error(RequestFactory().get("/boom/"))
    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in page
    assert "Model Library" in page
    assert "css/app.css" in page


def _boom(request: Any) -> Any:
    raise RuntimeError("secret detail from the stack")


# ROOT_URLCONF for the next test: the project's handler500 with a failing page.
urlpatterns = [path("boom/", _boom)]
handler500 = project_urls.handler500


@override_settings(ROOT_URLCONF="tests.test_security")
def test_a_failing_page_gets_the_branded_500_without_the_traceback() -> None:
    response = Client(raise_request_exception=False).get("/boom/")
    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in page
    assert "secret detail" not in page
    assert "Traceback" not in page


def test_a_foreign_host_gets_400_without_the_environment(client: Client) -> None:
    response = client.get("/", HTTP_HOST="attacker.example")
    assert response.status_code == 400
    page = response.content.decode()
    for secret in ("CELERY_BROKER_URL", "DATABASE", "SECRET_KEY", "PATH", "Traceback", "DisallowedHost"):
        assert secret not in page


def test_the_favicon_is_served_and_linked(client: Client) -> None:
    assert finders.find("favicon.svg")
    assert 'rel="icon"' in client.get("/accounts/login/").content.decode()


# --- Content-Security-Policy -------------------------------------------------------------------------


def test_pages_carry_a_strict_content_security_policy(client: Client) -> None:
    csp = client.get("/accounts/login/")["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "inline <script>"),
    (re.compile(r"<style\b", re.I), "<style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "event handler attribute"),
    (re.compile(r"\shx-on[:-]", re.I), "hx-on handler"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def test_templates_have_no_inline_script_or_style() -> None:
    problems = []
    for template in sorted((ROOT / "templates").rglob("*.html")):
        text = re.sub(r"\{#.*?#\}", lambda m: "\n" * m.group().count("\n"), template.read_text(), flags=re.S)
        for pattern, what in INLINE:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{template.relative_to(ROOT)}:{line}: {what}")
    assert problems == []
