"""The push CLI against a small fake server that checks what arrives (the
multipart body, file names, the sha256 of the bytes received), and refusals
that must happen before anything is sent."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pullcli.__main__ import main as cli

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "push-token-456"
SHA_LINE = re.compile(r"^([0-9a-f]{64})  (\S+)$")


class FakeRegistry(ThreadingHTTPServer):
    """The registration contract, recording every request it gets:
    ``POST /api/v1/models/`` → 201 ``{slug, url}`` (409 for a name it has),
    ``POST /api/v1/models/{slug}/versions/`` multipart ``files`` → 201
    ``{version, status, files: [{name, sha256, size}], url}``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_port}"
        self.requests: list[dict[str, Any]] = []
        self.models: dict[str, int] = {}  # slug → versions
        self.teams: dict[str, str] = {}  # slug → team slug
        self.uploads: list[dict[str, bytes]] = []
        self.version_reply: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]] | None = None
        self.create_reply: tuple[int, dict[str, str], bytes] | None = None


class _Handler(BaseHTTPRequestHandler):
    server: FakeRegistry

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, status: int, body: dict[str, Any], **headers: str) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.server.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
        match = re.fullmatch(r"/api/v1/models/([a-z0-9-]+)/", self.path)
        if match is None or match.group(1) not in self.server.models:
            self.reply(404, {"detail": "No model with that slug is visible to you.", "code": "not_found"})
        else:
            self.reply(200, {"slug": match.group(1), "team": self.server.teams[match.group(1)]})

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])  # the CLI must always send one
        body = self.rfile.read(length)
        record = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "size": len(body)}
        self.server.requests.append(record)
        if self.path == "/api/v1/models/":
            record["json"] = payload = json.loads(body)
            if self.server.create_reply is not None:
                status, headers, raw = self.server.create_reply
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(raw))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)
                return
            slug = re.sub(r"[^a-z0-9]+", "-", payload["name"].lower()).strip("-")
            if slug in self.server.models:
                self.reply(409, {"detail": "That model exists.", "code": "exists", "slug": slug})
                return
            self.server.models[slug] = 0
            self.server.teams[slug] = payload["team"]
            self.reply(201, {"slug": slug, "url": f"{self.server.url}/models/{slug}/"})
            return
        match = re.fullmatch(r"/api/v1/models/([a-z0-9-]+)/versions/", self.path)
        if match is None or match.group(1) not in self.server.models:
            self.reply(404, {"detail": "No such model.", "code": "not_found"})
            return
        message = BytesParser(policy=policy.HTTP).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
        )
        parts = [
            (p.get_param("name", header="content-disposition"), p.get_filename(), p.get_payload(decode=True))
            for p in message.iter_parts()
        ]
        assert all(field == "files" for field, _, _ in parts), parts
        files = {str(name): data for _, name, data in parts if isinstance(data, bytes)}
        assert len(files) == len(parts), "a file name sent twice"
        self.server.uploads.append(files)
        slug = match.group(1)
        self.server.models[slug] += 1
        answer = {
            "version": self.server.models[slug],
            "status": "ready",
            "files": [{"name": n, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in files.items()],
            "url": f"{self.server.url}/models/{slug}/?version={self.server.models[slug]}",
        }
        status = 201
        if self.server.version_reply is not None:
            status, answer = self.server.version_reply(answer)
        self.reply(status, answer)


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    server = FakeRegistry()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


FILES = {
    "config.json": b'{"architectures": ["BertForSequenceClassification"], "model_type": "bert"}',
    "model.safetensors": os.urandom(2_500_000),  # several 1 MiB chunks
    "tokenizer.json": b'{"version": "1.0"}',
    "README.md": b"---\nlicense: mit\n---\n# Tiny\n",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-bert"
    folder.mkdir()
    for name, data in FILES.items():
        (folder / name).write_bytes(data)
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (folder / ".git").mkdir()
    return folder


def push(registry: FakeRegistry, folder: Path, *extra: str, model: str = "acme/Tiny Bert") -> int:
    return cli(["push", str(folder), "--model", model, "--server", registry.url, "--token", TOKEN, *extra])


def test_push_registers_and_sends_every_file_with_its_sha256(
    registry: FakeRegistry, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert push(registry, folder, "--summary", "Routes tickets", "--visibility", "internal") == 0
    create, upload = registry.requests
    assert create["json"] == {
        "name": "Tiny Bert",
        "team": "acme",
        "visibility": "internal",
        "summary": "Routes tickets",
    }
    assert upload["path"] == "/api/v1/models/tiny-bert/versions/"
    assert create["headers"]["authorization"] == upload["headers"]["authorization"] == f"Token {TOKEN}"
    assert upload["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    (received,) = registry.uploads
    assert received == FILES  # every file, byte for byte; hidden entries skipped
    out, err = capsys.readouterr()
    lines = [SHA_LINE.match(line) for line in out.splitlines()]
    assert {m.group(2): m.group(1) for m in lines if m} == {n: hashlib.sha256(d).hexdigest() for n, d in FILES.items()}
    assert len(lines) == len(FILES)
    assert "100.0%" in err  # the progress bar reached the end
    assert "skipped hidden: .git, .gitattributes" in err
    assert f"acme/Tiny Bert v1 (ready): {registry.url}/models/tiny-bert/?version=1" in err


def test_push_sends_the_card_and_tree_paths_for_a_new_model(
    registry: FakeRegistry, folder: Path, tmp_path: Path
) -> None:
    card = tmp_path / "CARD.md"
    card.write_text("---\nlicense: apache-2.0\n---\n# Tiny Bert\nRoutes tickets.\n", encoding="utf-8")
    extra = ["--card", str(card), "--modality", "text/natural-language", "--result", "classification/multiclass"]
    assert push(registry, folder, *extra, "--domain", "support", "--quiet") == 0
    assert registry.requests[0]["json"] == {
        "name": "Tiny Bert",
        "team": "acme",
        "visibility": "private",
        "card": card.read_text(encoding="utf-8"),
        "modality": "text/natural-language",
        "result": "classification/multiclass",
        "domain": "support",
    }


def test_push_to_an_existing_model_adds_a_version(
    registry: FakeRegistry, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert push(registry, folder, "--quiet") == 0
    (folder / "config.json").write_bytes(b'{"model_type": "bert", "changed": true}')
    assert push(registry, folder) == 0
    assert [r["path"] for r in registry.requests] == [
        "/api/v1/models/",
        "/api/v1/models/tiny-bert/versions/",
        "/api/v1/models/",
        "/api/v1/models/tiny-bert/",  # whose is it?
        "/api/v1/models/tiny-bert/versions/",
    ]
    assert registry.models == {"tiny-bert": 2}
    assert registry.uploads[1]["config.json"] == b'{"model_type": "bert", "changed": true}'
    err = capsys.readouterr().err
    assert "exists: pushing a new version to it" in err
    assert "v2 (ready)" in err


def test_push_never_adds_to_another_teams_model(
    registry: FakeRegistry, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert push(registry, folder, "--quiet", model="acme/Tiny Bert") == 0
    assert push(registry, folder, model="other-team/Tiny Bert") == 1
    assert "'tiny-bert' is team acme's model, not other-team's" in capsys.readouterr().err
    assert registry.models == {"tiny-bert": 1}


def test_the_module_entry_points_run(registry: FakeRegistry, folder: Path) -> None:
    for module in (["pullcli", "push"], ["pullcli.push"]):
        done = subprocess.run(
            [sys.executable, "-m", *module, str(folder), "--model", "acme/Tiny Bert", "--server", registry.url],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "MODEL_LIBRARY_TOKEN": TOKEN},
        )
        assert done.returncode == 0, done.stderr
        assert f"{hashlib.sha256(FILES['config.json']).hexdigest()}  config.json" in done.stdout
    assert registry.models == {"tiny-bert": 2}
    assert registry.requests[0]["headers"]["authorization"] == f"Token {TOKEN}"


def _make(folder: Path, kind: str) -> str:
    """Add one thing push must refuse; return what the message names."""
    if kind == "symlink":
        (folder / "weights.safetensors").symlink_to("/etc/hostname")
        return "weights.safetensors: a symbolic link"
    if kind == "subfolder":
        (folder / "1_Pooling").mkdir()
        return "1_Pooling/: a subfolder"
    if kind == "fifo":
        os.mkfifo(folder / "pipe")
        return "pipe: not a regular file"
    if kind.startswith("name:"):
        name = kind[5:]
        (folder / name).write_bytes(b"x")
        return "file names are plain ASCII"
    (folder / kind).write_bytes(b"\x80\x02}q\x00.")  # a pickle
    return f"{kind}: pickle weights are refused"


REFUSED = [
    "pytorch_model.bin",
    "model.pt",
    "model.pth",
    "last.ckpt",
    "head.pkl",
    "MODEL.BIN",
    "symlink",
    "subfolder",
    "fifo",
    "name:..\\..\\x.json",
    "name:model\u2024safetensors",
    "name:\uff0e\uff0econfig.json",
    "name:evil\nname.txt",
    "name:space name.txt",
]


@pytest.mark.parametrize("kind", REFUSED)
def test_push_refuses_before_sending_anything(
    registry: FakeRegistry, folder: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    reason = _make(folder, kind)
    assert push(registry, folder) == 2
    err = capsys.readouterr().err
    assert "nothing was sent" in err
    assert reason in err
    assert registry.requests == []


def test_push_lists_every_problem_at_once(
    registry: FakeRegistry, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    (folder / "sub").mkdir()
    assert push(registry, folder) == 2
    err = capsys.readouterr().err
    assert "pytorch_model.bin: pickle weights" in err
    assert "sub/: a subfolder" in err
    assert registry.requests == []


def test_push_needs_a_token(
    registry: FakeRegistry, folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODEL_LIBRARY_TOKEN", raising=False)
    assert cli(["push", str(folder), "--model", "acme/x", "--server", registry.url, "--token", ""]) == 2
    assert "needs an API token" in capsys.readouterr().err
    assert registry.requests == []


def test_push_shows_the_servers_reasons(
    registry: FakeRegistry, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.version_reply = lambda _: (
        400,
        {
            "detail": "The folder is not a model.",
            "code": "invalid",
            "errors": {"files": ["config.json: no model_type", "no *.safetensors weights"]},
        },
    )
    assert push(registry, folder) == 1
    err = capsys.readouterr().err
    assert "upload failed: HTTP 400 [invalid]: The folder is not a model." in err
    assert "  - files: config.json: no model_type" in err
    assert "  - files: no *.safetensors weights" in err


def test_push_catches_bytes_stored_differently(
    registry: FakeRegistry, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def tamper(answer: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for item in answer["files"]:
            if item["name"] == "model.safetensors":
                item["sha256"] = "0" * 64
        return 201, answer

    registry.version_reply = tamper
    assert push(registry, folder) == 3
    err = capsys.readouterr().err
    assert "the server stored different bytes" in err
    assert "model.safetensors: sent sha256" in err


def test_push_never_follows_a_redirect_with_its_token(
    registry: FakeRegistry, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = FakeRegistry()
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        registry.create_reply = (307, {"Location": other.url + "/api/v1/models/"}, b"")
        assert push(registry, folder) == 1
        assert "HTTP 307" in capsys.readouterr().err
        assert other.requests == []
        assert len(registry.requests) == 1
    finally:
        other.shutdown()
        other.server_close()


def test_push_streams_a_large_file_in_bounded_memory(registry: FakeRegistry, tmp_path: Path) -> None:
    """48 MiB of weights go out with the client's Python heap peaking under 8 MiB."""
    folder = tmp_path / "big"
    folder.mkdir()
    chunk = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with open(folder / "model.safetensors", "wb") as fh:
        for i in range(48):
            piece = bytes([i]) + chunk[1:]
            fh.write(piece)
            digest.update(piece)
    probe = (
        "import sys, tracemalloc; from pullcli.__main__ import main; tracemalloc.start(); "
        "rc = main(sys.argv[1:]); print('peak', tracemalloc.get_traced_memory()[1], file=sys.stderr); sys.exit(rc)"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            "push",
            str(folder),
            "--model",
            "acme/big",
            "--server",
            registry.url,
            "--token",
            TOKEN,
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    peak = int(re.search(r"peak (\d+)", done.stderr).group(1))  # type: ignore[union-attr]
    assert peak < 8 << 20, f"peak {peak / 1e6:.1f} MB"
    print(f"push of 48 MiB: Python heap peak {peak / 1e6:.1f} MB")
    assert done.stdout.split() == [digest.hexdigest(), "model.safetensors"]
    (received,) = registry.uploads
    assert hashlib.sha256(received["model.safetensors"]).hexdigest() == digest.hexdigest()


def test_a_server_refusing_before_reading_the_body_is_heard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A server that answers 413 by Content-Length and closes without reading
    the body (gunicorn does): the send fails, and the CLI shows the answer."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer(sock: socket.socket, status: str, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n"
        sock.sendall(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
        sock.close()

    def serve() -> None:
        for _ in range(2):
            sock, _ = listener.accept()
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(65536)
            if b"/versions/" in head.split(b"\r\n")[0]:
                answer(sock, "413 Payload Too Large", {"detail": "The upload is too big.", "code": "too_large"})
            else:
                answer(sock, "201 Created", {"slug": "big", "url": "u"})

    threading.Thread(target=serve, daemon=True).start()
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(os.urandom(40 << 20))
    try:
        command = ["push", str(folder), "--model", "acme/big", "--server", f"http://127.0.0.1:{port}"]
        assert cli([*command, "--token", TOKEN, "--quiet"]) == 1
    finally:
        listener.close()
    assert "upload failed: HTTP 413 [too_large]: The upload is too big." in capsys.readouterr().err


def test_a_model_that_is_not_team_slash_name_is_a_usage_error(
    registry: FakeRegistry, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as usage:
        push(registry, folder, model="just-a-name")
    assert usage.value.code == 2
    assert "TEAM/NAME" in capsys.readouterr().err
    assert registry.requests == []


# --- against the real app ----------------------------------------------------------------


@pytest.fixture
def member_token(make_team: Callable[..., Any], make_user: Callable[..., Any]) -> tuple[Any, str]:
    from catalog.roles import Role
    from catalog.services.teams import membership_set
    from catalog.services.tokens import api_token_create

    team = make_team("Team A")
    user = make_user("pusher")
    membership_set(team=team, user=user, role=Role.MEMBER)
    return team, api_token_create(user=user, name="cli")


def local_hashes(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("taxonomy")
def test_push_registers_a_hugging_face_folder_in_the_real_app(
    live_server: Any, member_token: tuple[Any, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from catalog.models import RegisteredModel
    from catalog.storage import artifact_open
    from tests.registration_folders import make_hf_folder

    team, token = member_token
    folder = make_hf_folder(tmp_path / "router", kind="bert", readme="---\nlicense: mit\n---\n# Router\n")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    local = local_hashes(folder)
    assert {"model.safetensors", "config.json", "README.md"} <= set(local)
    command = ["push", str(folder), "--model", f"{team.slug}/Tiny Router", "--server", live_server.url]
    command += ["--token", token, "--visibility", "internal", "--summary", "Routes tickets"]

    assert cli(command) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()
    model = RegisteredModel.objects.get(slug="tiny-router")
    assert (model.team, model.visibility, model.summary) == (team, "internal", "Routes tickets")
    version = model.versions.get(version=1)
    assert {f["name"]: f["sha256"] for f in version.files} == local
    for f in version.files:  # byte-identical in the store
        with artifact_open(f["sha256"]) as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == f["sha256"]
    assert {m.group(2): m.group(1) for m in map(SHA_LINE.match, out.splitlines()) if m} == local
    assert f"{team.slug}/Tiny Router v1 (" in err
    assert f"{live_server.url}/models/tiny-router/?version=1" in err

    # Again: the model exists (409), so the folder becomes version 2.
    (folder / "README.md").write_text("# Router, second cut\n")
    assert cli(command) == 0, capsys.readouterr().err
    assert "exists: pushing a new version to it" in capsys.readouterr().err
    assert sorted(model.versions.values_list("version", flat=True)) == [1, 2]
    assert {f["name"]: f["sha256"] for f in model.versions.get(version=2).files} == local_hashes(folder)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("taxonomy")
def test_push_shows_the_real_apps_refusals(
    live_server: Any,
    member_token: tuple[Any, str],
    make_team: Callable[..., Any],
    make_user: Callable[..., Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from django.test import override_settings

    from catalog.models import RegisteredModel
    from catalog.services.tokens import api_token_create

    team, token = member_token
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("no weights here")
    base = ["push", str(folder), "--server", live_server.url]

    # A folder without safetensors weights: the server's reason, and no version.
    assert cli([*base, "--model", f"{team.slug}/Notes", "--token", token]) == 1
    err = capsys.readouterr().err
    assert "upload failed: HTTP 422" in err
    assert "  - files: " in err
    assert not RegisteredModel.objects.get(slug="notes").versions.exists()

    # Over the server's size limit (refused by Content-Length).
    with override_settings(MODEL_MAX_BYTES=100):
        assert cli([*base, "--model", f"{team.slug}/Notes", "--token", token]) == 1
    assert "upload failed: HTTP 413 [too_large]" in capsys.readouterr().err

    # A team the user is not in.
    assert cli([*base, "--model", "team-b/Notes", "--token", token]) == 1
    assert "register failed: HTTP 422" in capsys.readouterr().err

    # A wrong token.
    assert cli([*base, "--model", f"{team.slug}/Other", "--token", "mlk_wrong"]) == 1
    assert "register failed: HTTP 401" in capsys.readouterr().err

    # The name is team A's: a member of team B is told, and nothing is sent to
    # either model (the private one is not even shown to exist beyond the 409).
    assert cli([*base, "--model", f"{team.slug}/Shared", "--token", token, "--visibility", "internal"]) == 1
    outsider = api_token_create(user=make_user("outsider", make_team("Team B")), name="cli")
    capsys.readouterr()
    assert cli([*base, "--model", "team-b/Shared", "--token", outsider]) == 1
    assert "'shared' is team team-a's model, not team-b's" in capsys.readouterr().err
    assert cli([*base, "--model", "team-b/Notes", "--token", outsider]) == 1
    assert "'notes' is taken by a model you cannot see" in capsys.readouterr().err
    assert not RegisteredModel.objects.filter(versions__isnull=False).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("taxonomy")
def test_pushed_folder_compiles_and_pulls_back_runnable(
    live_server: Any, member_token: tuple[Any, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole loop through both CLIs: push a Hugging Face folder, compile
    it, pull its fp32 bundle (every check passes on a real bundle), run it."""
    from catalog.models import ModelVersion
    from catalog.services.compile import version_compile
    from tests.registration_folders import LABELS, make_hf_folder

    team, token = member_token
    folder = make_hf_folder(tmp_path / "router", kind="bert")
    server = ["--server", live_server.url, "--token", token]
    assert cli(["push", str(folder), "--model", f"{team.slug}/Loop", "--visibility", "internal", *server]) == 0
    version = ModelVersion.objects.get(registered_model__slug="loop", version=1)
    served = [v for v in version_compile(version_id=version.pk) if v.status == "served" and v.precision == "fp32"]
    assert served, "no fp32 variant was served"
    out = tmp_path / "pulled"
    assert cli(["loop", "--version", "1", "--precision", "fp32", "--hardware", "cpu", "-o", str(out), *server]) == 0
    assert "(sha256 verified)" in capsys.readouterr().out
    assert {"model.onnx", "manifest.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "run_bundle.py"), str(out), "Where is my parcel?"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    label, confidence = done.stdout.split()
    assert label in LABELS
    assert 0.0 < float(confidence) <= 1.0
