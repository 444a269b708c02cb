"""The pull CLI: against a live server (resolve, download, resume, verify,
unpack, the ten-line script in docs/ running a real bundle), and against a
hostile local HTTP server (names, redirects, bundles that must be refused
leaving nothing behind)."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import subprocess
import sys
import tarfile
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pullcli.__main__ import main as cli
from pullcli.net import CliError
from pullcli.pull import unpack
from tests.catalog.test_s3_storage import moto_endpoint, s3  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "secret-token-123"
WEIGHTS = bytes(range(256)) * 4000  # ~1 MB


# --- a live Model Library ------------------------------------------------------


@pytest.fixture
def bundle_variant(make_model: Any, tmp_path: Path) -> tuple[Any, Path]:
    from catalog.models import Variant, VariantStatus
    from catalog.storage import artifact_put_path
    from runners.compile import write_bundle

    model = make_model("Router")
    weights = tmp_path / "model.onnx"
    weights.write_bytes(WEIGHTS)
    bundle = write_bundle(tmp_path / "b.tar", {"model.onnx": weights}, {"model": "router", "labels": ["a", "b"]})
    stored = artifact_put_path(bundle)
    variant = Variant.objects.create(
        version=model.latest_version,
        name="onnx-int8",
        format="onnx",
        precision="int8",
        runtime="onnxruntime",
        hardware="cpu",
        status=VariantStatus.SERVED,
        sha256=stored.sha256,
        size=stored.size,
        latency_p50_ms=2.0,
        latency_p95_ms=3.0,
    )
    return variant, bundle


def args(live_server: Any, out: Path, *extra: str) -> list[str]:
    return [
        "router",
        "--precision",
        "int8",
        "--hardware",
        "cpu",
        "-o",
        str(out),
        "--server",
        live_server.url,
        "--quiet",
        *extra,
    ]


@pytest.mark.django_db(transaction=True)
def test_pull_downloads_verifies_and_unpacks(live_server: Any, bundle_variant: Any, tmp_path: Path) -> None:
    variant, bundle = bundle_variant
    out = tmp_path / "out"
    assert cli(args(live_server, out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx"]
    assert (out / "model.onnx").read_bytes() == WEIGHTS
    variant.refresh_from_db()
    assert variant.download_count == 1


@pytest.mark.django_db(transaction=True)
def test_pull_resumes_an_interrupted_download(live_server: Any, bundle_variant: Any, tmp_path: Path) -> None:
    variant, bundle = bundle_variant
    out = tmp_path / "out"
    out.mkdir()
    part = out / f"{variant.sha256}.tar.part"
    part.write_bytes(bundle.read_bytes()[:400_000])  # what an interrupted run left behind
    assert cli(["pull", *args(live_server, out)]) == 0
    assert (out / "model.onnx").read_bytes() == WEIGHTS
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx"]
    variant.refresh_from_db()
    assert variant.download_count == 0  # only the rest was fetched, with a Range request


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("s3")  # before bundle_variant: its bundle goes to the bucket
def test_pull_through_a_presigned_s3_redirect(
    live_server: Any, bundle_variant: Any, tmp_path: Path, settings: Any
) -> None:
    """With S3 storage the API answers 302 to a presigned URL on the object
    store (moto here): pull follows it, a resumed download included."""
    from catalog.storage import artifact_local_path

    variant, bundle = bundle_variant
    settings.ARTIFACT_PRESIGNED_DOWNLOADS = True
    assert artifact_local_path(variant.sha256) is None  # the bundle lives in the bucket
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{variant.sha256}.tar.part").write_bytes(bundle.read_bytes()[:400_000])
    assert cli(args(live_server, out)) == 0
    assert (out / "model.onnx").read_bytes() == WEIGHTS
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx"]


@pytest.mark.django_db(transaction=True)
def test_pull_catches_a_corrupted_byte(
    live_server: Any, bundle_variant: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    variant, bundle = bundle_variant
    out = tmp_path / "out"
    out.mkdir()
    damaged = bytearray(bundle.read_bytes()[:400_000])
    damaged[1234] ^= 0xFF
    part = out / f"{variant.sha256}.tar.part"
    part.write_bytes(bytes(damaged))
    assert cli(args(live_server, out)) == 3
    assert "sha256 mismatch" in capsys.readouterr().err
    assert list(out.iterdir()) == []


@pytest.mark.django_db(transaction=True)
def test_pull_explains_when_nothing_matches(
    live_server: Any, bundle_variant: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(args(live_server, tmp_path / "o", "--max-p95-ms", "1")) == 2
    err = capsys.readouterr().err
    assert "onnx-int8: p95 3.00 ms > 1.0 ms" in err
    assert not (tmp_path / "o").exists()


def test_the_ten_line_script_runs_a_real_bundle(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """A bundle exactly as the compile worker writes it passes every check of
    unpack, and docs/run_bundle.py runs it."""
    from runners import compile as C
    from runners.families import text_classifier as tc
    from runners.synthetic_text import support_tickets

    rows = support_tickets(120, seed=4, ambiguous_share=0.0)
    tc.fit(
        tiny_bert_dir,
        [t for t, _ in rows],
        [label for _, label in rows],
        tmp_path / "m",
        tc.FitParams(epochs=40, learning_rate=0.05),
    )
    (result,) = C.compile_version(
        family="text-classifier",
        model_dir=tmp_path / "m",
        work=tmp_path / "w",
        eval_inputs=C.EvalInputs(),
        manifest_base={"labels": ["account", "billing", "shipping", "technical"], "preprocessing": {"max_length": 128}},
        specs=C.SPECS[:1],
    )
    manifest = unpack(result.bundle_path, tmp_path / "bundle")  # type: ignore[arg-type]
    assert "tokenizer.json" in manifest["files"]
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == sorted([*manifest["files"], "manifest.json"])
    assert len((ROOT / "docs" / "run_bundle.py").read_text().splitlines()) == 10
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "docs" / "run_bundle.py"),
            str(tmp_path / "bundle"),
            "My order has not arrived yet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    label, confidence = done.stdout.split()
    assert label in {"account", "billing", "shipping", "technical"}
    assert 0.25 <= float(confidence) <= 1.0


# --- a hostile server -------------------------------------------------------------

Route = Callable[[BaseHTTPRequestHandler], None]


class Listener(ThreadingHTTPServer):
    """A local HTTP server whose routes a test sets, recording every request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.url = f"http://127.0.0.1:{self.server_port}"

    def headers_of(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.seen if urlsplit(p).path == path]


class _Handler(BaseHTTPRequestHandler):
    server: Listener

    def do_GET(self) -> None:
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        route = self.server.routes.get(urlsplit(self.path).path)
        if route is None:
            self.send_error(404)
        else:
            route(self)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def listen() -> Iterator[Callable[[], Listener]]:
    started: list[Listener] = []

    def start() -> Listener:
        server = Listener()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    for key, value in {"Content-Length": str(len(body)), **headers}.items():
        handler.send_header(key.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def json_route(body: dict[str, Any]) -> Route:
    return lambda h: send(h, 200, json.dumps(body).encode(), Content_Type="application/json")


def redirect_route(location: str) -> Route:
    return lambda h: send(h, 302, b"", Location=location)


def bytes_route(data: bytes) -> Route:
    """The file, with ``Range: bytes=N-`` answered by a 206."""

    def route(h: BaseHTTPRequestHandler) -> None:
        wanted = h.headers.get("Range", "")
        if wanted.startswith("bytes=") and wanted.endswith("-"):
            start = int(wanted[6:-1])
            send(h, 206, data[start:], Content_Range=f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            send(h, 200, data)

    return route


def member(name: str, data: bytes = b"", **attrs: Any) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def make_tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def listing(files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    return {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in files.items()}


def manifest_member(listed: dict[str, dict[str, Any]]) -> tuple[tarfile.TarInfo, bytes]:
    return member("manifest.json", json.dumps({"labels": ["a", "b"], "files": listed}).encode())


def make_bundle(files: dict[str, bytes] | None = None) -> bytes:
    """A bundle laid out as runners.compile.write_bundle writes one."""
    files = files or {"model.onnx": WEIGHTS, "tokenizer.json": b"{}"}
    return make_tar([manifest_member(listing(files)), *(member(n, d) for n, d in sorted(files.items()))])


def serve(server: Listener, data: bytes, **variant: Any) -> None:
    """Answer ``resolve`` for "router" with ``data`` as its bundle at /dl."""
    server.routes["/api/v1/models/router/resolve"] = json_route(
        {
            "model": "router",
            "version": 1,
            "name": "onnx-int8",
            "precision": "int8",
            "runtime": "onnxruntime",
            "hardware": "cpu",
            "latency_p95_ms": 3.0,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "download_url": server.url + "/dl",
            **variant,
        }
    )
    server.routes["/dl"] = bytes_route(data)


def pull_from(server: Listener, out: Path, *extra: str) -> int:
    return cli(["router", "-o", str(out), "--server", server.url, "--token", TOKEN, "--quiet", *extra])


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A folder beside the output that nothing may touch."""
    folder = tmp_path / "canary"
    folder.mkdir()
    (folder / "victim.txt").write_text("untouched")
    return folder


def assert_refused(code: int, out: Path, canary: Path, err: str, reason: str) -> None:
    """Exit 3 with the reason, and nothing left behind: no bundle, no staging
    folder, not even the output folder this run created."""
    assert code == 3, err
    assert "refusing the bundle" in err
    assert reason in err
    assert not out.exists(), tree(out)
    assert tree(canary) == ["victim.txt"]
    assert (canary / "victim.txt").read_text() == "untouched"


HOSTILE_NAMES = [
    "/ABS",  # replaced by an absolute path into the canary folder
    "../../canary/x",
    "..\\..\\canary\\x",
    "\u2024\u2024/canary/x",  # one dot leader, twice
    "\uff0e\uff0e/canary/x",  # fullwidth full stops
    "x\x00/../../canary/x",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_the_bundle_file_is_never_named_by_the_server(
    listen: Callable[[], Listener], tmp_path: Path, canary: Path, name: str
) -> None:
    name = str(canary / "x") if name == "/ABS" else name
    server = listen()
    serve(server, make_bundle(), model=name, name=name)
    out = tmp_path / "out"
    assert pull_from(server, out) == 0
    assert tree(out) == ["manifest.json", "model.onnx", "tokenizer.json"]
    assert (out / "model.onnx").read_bytes() == WEIGHTS
    assert tree(canary) == ["victim.txt"]
    assert [p for p in tmp_path.rglob("*") if ".tar" in p.name] == []


def test_a_hostile_sha256_field_is_refused_before_any_file_is_written(
    listen: Callable[[], Listener], tmp_path: Path, canary: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = listen()
    serve(server, make_bundle(), sha256="../../canary/x")
    out = tmp_path / "out"
    assert pull_from(server, out) == 3
    assert "not 64 hex digits" in capsys.readouterr().err
    assert not out.exists()
    assert server.headers_of("/dl") == []
    assert tree(canary) == ["victim.txt"]


@pytest.mark.parametrize("status", [200, 404])
def test_a_deeply_nested_reply_is_an_error_not_a_crash(
    listen: Callable[[], Listener], tmp_path: Path, capsys: pytest.CaptureFixture[str], status: int
) -> None:
    server = listen()
    body = b"[" * 100_000 + b"]" * 100_000
    server.routes["/api/v1/models/router/resolve"] = lambda h: send(h, status, body)
    assert pull_from(server, tmp_path / "out") == (1 if status == 200 else 2)
    err = capsys.readouterr().err
    assert ("resolve: the server's reply is not JSON" if status == 200 else "resolve failed: HTTP 404: [[[") in err
    assert not (tmp_path / "out").exists()


def test_server_strings_cannot_drive_the_terminal(
    listen: Callable[[], Listener], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = listen()
    serve(server, make_bundle(), model="router\x1b]0;pwned\x07\x1b[2J\u202e")
    assert cli(["router", "-o", str(tmp_path / "out"), "--server", server.url]) == 0
    err = capsys.readouterr().err
    assert "router\\u001b]0;pwned\\u0007\\u001b[2J\\u202e v1 onnx-int8" in err
    assert "\x1b" not in err


# --- credentials and redirects ------------------------------------------------------


def test_a_redirect_to_another_origin_gets_no_token(listen: Callable[[], Listener], tmp_path: Path) -> None:
    """As with S3 storage: the API answers 302 to the object store, which must
    never see the catalogue's token."""
    api, store = listen(), listen()
    data = make_bundle()
    serve(api, data)
    api.routes["/dl"] = redirect_route(store.url + "/bucket/blob?X-Amz-Signature=abc")
    store.routes["/bucket/blob"] = bytes_route(data)
    assert pull_from(api, tmp_path / "out") == 0
    assert (tmp_path / "out" / "model.onnx").read_bytes() == WEIGHTS
    assert api.headers_of("/dl")[0]["authorization"] == f"Token {TOKEN}"
    (at_store,) = store.headers_of("/bucket/blob")
    assert "authorization" not in at_store
    assert "cookie" not in at_store
    assert TOKEN not in json.dumps(store.seen)


def test_a_download_url_on_another_origin_gets_no_token(listen: Callable[[], Listener], tmp_path: Path) -> None:
    api, other = listen(), listen()
    data = make_bundle()
    serve(api, data, download_url=other.url + "/dl")
    other.routes["/dl"] = bytes_route(data)
    assert pull_from(api, tmp_path / "out") == 0
    assert TOKEN not in json.dumps(other.seen)


def test_a_same_origin_redirect_keeps_the_token(listen: Callable[[], Listener], tmp_path: Path) -> None:
    api = listen()
    data = make_bundle()
    serve(api, data)
    api.routes["/dl"] = redirect_route("/files/blob")  # relative: same scheme, host and port
    api.routes["/files/blob"] = bytes_route(data)
    assert pull_from(api, tmp_path / "out") == 0
    assert api.headers_of("/files/blob")[0]["authorization"] == f"Token {TOKEN}"


def test_a_redirect_to_another_port_of_the_same_host_gets_no_token(
    listen: Callable[[], Listener], tmp_path: Path
) -> None:
    api, other = listen(), listen()
    data = make_bundle()
    serve(api, data)
    api.routes["/dl"] = redirect_route(other.url + "/blob")
    other.routes["/blob"] = bytes_route(data)
    assert pull_from(api, tmp_path / "out") == 0
    assert "authorization" not in other.headers_of("/blob")[0]


def test_a_redirect_to_a_file_url_is_refused(
    listen: Callable[[], Listener], tmp_path: Path, canary: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = listen()
    serve(api, make_bundle())
    api.routes["/dl"] = redirect_route((canary / "victim.txt").as_uri())
    assert pull_from(api, tmp_path / "out") == 1
    assert "not an http(s) URL" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- download: resume and bounds ---------------------------------------------------


def test_resume_sends_range_and_if_range(listen: Callable[[], Listener], tmp_path: Path) -> None:
    server = listen()
    data = make_bundle()
    serve(server, data)
    sha = hashlib.sha256(data).hexdigest()
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{sha}.tar.part").write_bytes(data[:300_000])
    assert pull_from(server, out) == 0
    (request,) = server.headers_of("/dl")
    assert request["range"] == "bytes=300000-"
    assert request["if-range"] == f'"{sha}"'
    assert (out / "model.onnx").read_bytes() == WEIGHTS
    assert tree(out) == ["manifest.json", "model.onnx", "tokenizer.json"]


def test_a_complete_part_is_verified_without_downloading_again(listen: Callable[[], Listener], tmp_path: Path) -> None:
    server = listen()
    data = make_bundle()
    serve(server, data)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{hashlib.sha256(data).hexdigest()}.tar.part").write_bytes(data)
    assert pull_from(server, out) == 0
    assert server.headers_of("/dl") == []
    assert tree(out) == ["manifest.json", "model.onnx", "tokenizer.json"]


def test_resume_through_a_redirect_to_an_object_store(listen: Callable[[], Listener], tmp_path: Path) -> None:
    """The Range follows the redirect (so S3 answers 206); the token and the
    API's If-Range do not."""
    api, store = listen(), listen()
    data = make_bundle()
    serve(api, data)
    api.routes["/dl"] = redirect_route(store.url + "/bucket/blob")
    store.routes["/bucket/blob"] = bytes_route(data)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{hashlib.sha256(data).hexdigest()}.tar.part").write_bytes(data[:300_000])
    assert pull_from(api, out) == 0
    (at_store,) = store.headers_of("/bucket/blob")
    assert at_store["range"] == "bytes=300000-"
    assert "if-range" not in at_store
    assert "authorization" not in at_store
    assert (out / "model.onnx").read_bytes() == WEIGHTS


def test_resume_after_a_changed_file_starts_over(listen: Callable[[], Listener], tmp_path: Path) -> None:
    """A server that ignores Range (or whose ETag changed) answers 200: the
    stale part is overwritten, not appended to."""
    server = listen()
    data = make_bundle()
    serve(server, data)
    server.routes["/dl"] = lambda h: send(h, 200, data)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{hashlib.sha256(data).hexdigest()}.tar.part").write_bytes(b"stale" * 1000)
    assert pull_from(server, out) == 0
    assert (out / "model.onnx").read_bytes() == WEIGHTS


def test_a_server_sending_more_than_it_declared_is_cut_off(
    listen: Callable[[], Listener], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = listen()
    data = make_bundle()
    serve(server, data, size=1000)
    assert pull_from(server, tmp_path / "out") == 3
    assert "more than the 1,000 bytes it declared" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_206_for_another_range_is_refused(
    listen: Callable[[], Listener], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = listen()
    data = make_bundle()
    serve(server, data)
    server.routes["/dl"] = lambda h: send(h, 206, data, Content_Range=f"bytes 0-{len(data) - 1}/{len(data)}")
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{hashlib.sha256(data).hexdigest()}.tar.part").write_bytes(data[:1000])
    assert pull_from(server, out) == 3
    assert "different range" in capsys.readouterr().err
    assert list(out.iterdir()) == []


# --- hostile bundles ---------------------------------------------------------------


def pull_hostile(listen: Callable[[], Listener], tmp_path: Path, data: bytes) -> tuple[int, Path]:
    server = listen()
    serve(server, data)
    out = tmp_path / "out"
    return pull_from(server, out), out


GOOD = {"model.onnx": WEIGHTS}
LISTED_GOOD = listing(GOOD)


def _compressed(compress: Callable[[bytes], bytes], payload: int) -> bytes:
    zeros = {"model.onnx": bytes(payload)}
    return compress(make_tar([manifest_member(listing(zeros)), member("model.onnx", zeros["model.onnx"])]))


HOSTILE_BUNDLES: dict[str, tuple[Callable[[], bytes], str]] = {
    "absolute member": (
        lambda: make_tar([manifest_member(listing({"x": b"evil"})), member("/tmp/x", b"evil")]),
        "not listed in the manifest",
    ),
    "parent member": (
        lambda: make_tar([manifest_member(LISTED_GOOD), member("../escape.txt", b"bad")]),
        "not listed in the manifest",
    ),
    "symlink": (
        lambda: make_tar(
            [manifest_member(LISTED_GOOD), member("model.onnx", type=tarfile.SYMTYPE, linkname="/etc/passwd")]
        ),
        "is a symlink",
    ),
    "hardlink": (
        lambda: make_tar(
            [manifest_member(LISTED_GOOD), member("model.onnx", type=tarfile.LNKTYPE, linkname="manifest.json")]
        ),
        "is a hardlink",
    ),
    "character device": (
        lambda: make_tar([manifest_member(LISTED_GOOD), member("model.onnx", type=tarfile.CHRTYPE, devmajor=1)]),
        "is a device",
    ),
    "block device": (
        lambda: make_tar([manifest_member(LISTED_GOOD), member("model.onnx", type=tarfile.BLKTYPE, devmajor=8)]),
        "is a device",
    ),
    "fifo": (
        lambda: make_tar([manifest_member(LISTED_GOOD), member("model.onnx", type=tarfile.FIFOTYPE)]),
        "is a fifo",
    ),
    "folder": (
        lambda: make_tar([manifest_member(LISTED_GOOD), member("model.onnx", type=tarfile.DIRTYPE)]),
        "is a folder",
    ),
    "setuid": (
        lambda: make_tar([manifest_member(LISTED_GOOD), member("model.onnx", WEIGHTS, mode=0o4755)]),
        "setuid",
    ),
    "pax path override": (
        lambda: make_tar(
            [manifest_member(LISTED_GOOD), member("model.onnx", WEIGHTS, pax_headers={"path": "model.onnx"})]
        ),
        "pax headers ['path']",
    ),
    "pax path to a parent": (
        lambda: make_tar(
            [manifest_member(LISTED_GOOD), member("model.onnx", WEIGHTS, pax_headers={"path": "../../escape"})]
        ),
        "pax headers",
    ),
    "xz bomb": (lambda: _compressed(lzma.compress, 16 << 20), "xz-compressed"),
    "gzip": (lambda: _compressed(gzip.compress, 1000), "gzip-compressed"),
    "bzip2": (lambda: _compressed(bz2.compress, 1000), "bzip2-compressed"),
    "not a tar": (lambda: b"just some bytes" * 100, "not a POSIX tar"),
    "extra member": (
        lambda: make_tar([manifest_member(LISTED_GOOD), member("model.onnx", WEIGHTS), member("extra.sh", b"rm")]),
        "extra.sh is not listed in the manifest",
    ),
    "missing member": (
        lambda: make_tar([manifest_member(listing({**GOOD, "vocab.txt": b"a"})), member("model.onnx", WEIGHTS)]),
        "missing from it: vocab.txt",
    ),
    "duplicate member": (
        lambda: make_tar([manifest_member(LISTED_GOOD), member("model.onnx", WEIGHTS), member("model.onnx", WEIGHTS)]),
        "appears twice",
    ),
    "member bigger than listed": (
        lambda: make_tar([manifest_member(listing({"model.onnx": b"small"})), member("model.onnx", WEIGHTS)]),
        f"model.onnx is {len(WEIGHTS):,} bytes; the manifest says 5",
    ),
    "member with another sha256": (
        lambda: make_tar([manifest_member(LISTED_GOOD), member("model.onnx", WEIGHTS[::-1])]),
        "does not match the manifest",
    ),
    "manifest not first": (
        lambda: make_tar([member("model.onnx", WEIGHTS), manifest_member(LISTED_GOOD)]),
        "first member must be manifest.json",
    ),
    "manifest not JSON": (lambda: make_tar([member("manifest.json", b"{nope")]), "manifest.json is not JSON"),
    "manifest nested 100,000 deep": (
        lambda: make_tar([member("manifest.json", b"[" * 100_000 + b"]" * 100_000)]),
        "manifest.json is not JSON",
    ),
    "manifest without files": (
        lambda: make_tar([member("manifest.json", b'{"files": {}}')]),
        "manifest.json lists no files",
    ),
    "manifest size not a number": (
        lambda: make_tar(
            [manifest_member({"model.onnx": {"sha256": "0" * 64, "size": "1e12"}}), member("model.onnx", WEIGHTS)]
        ),
        "no valid size",
    ),
    "names equal ignoring case": (
        lambda: make_tar([manifest_member(listing({"a.txt": b"1", "A.TXT": b"2"}))]),
        "twice (ignoring case)",
    ),
    "truncated member": (
        lambda: make_tar([manifest_member(LISTED_GOOD), member("model.onnx", WEIGHTS)])[:300_000],
        "not a readable tar",
    ),
}


@pytest.mark.parametrize("kind", HOSTILE_BUNDLES)
def test_a_hostile_bundle_is_refused_leaving_nothing_behind(
    listen: Callable[[], Listener], tmp_path: Path, canary: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    build, reason = HOSTILE_BUNDLES[kind]
    code, out = pull_hostile(listen, tmp_path, build())
    assert_refused(code, out, canary, capsys.readouterr().err, reason)


UNSAFE_FILE_NAMES = [
    "/etc/hostname",
    "/dev/zero",
    "../../canary/victim.txt",
    "sub/model.onnx",
    "..\\..\\canary\\victim.txt",
    "\u2024\u2024",
    "\uff0e\uff0e",
    "model\u2024onnx",
    "x\x00y",
    ".hidden",
    "..",
    "NUL.txt",
    "model.onnx ",
    "a" * 101,
]


@pytest.fixture
def opened() -> Iterator[list[str]]:
    """Every path the process opens while the test runs (a runtime audit hook)."""
    paths: list[str] = []
    recording = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if recording[0] and event == "open" and isinstance(args[0], str | bytes):
            paths.append(str(args[0]))

    sys.addaudithook(hook)
    yield paths
    recording[0] = False


@pytest.mark.parametrize("name", UNSAFE_FILE_NAMES)
def test_an_unsafe_manifest_name_is_refused_without_opening_it(
    listen: Callable[[], Listener],
    tmp_path: Path,
    canary: Path,
    capsys: pytest.CaptureFixture[str],
    opened: list[str],
    name: str,
) -> None:
    """The manifest names the files; a name that is not one plain file name is
    refused before anything is read or written under it."""
    listed = {name: {"sha256": hashlib.sha256(b"evil").hexdigest(), "size": 4}}
    data = make_tar([manifest_member(listed)])  # no member: only the manifest's word
    code, out = pull_hostile(listen, tmp_path, data)
    touched = [p for p in opened if any(x in p for x in ("hostname", "/dev/", "victim", "canary", "model"))]
    assert touched == []
    assert_refused(code, out, canary, capsys.readouterr().err, "unsafe file name")


def test_an_unsafe_member_name_is_refused(
    listen: Callable[[], Listener], tmp_path: Path, canary: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = {"..\\evil.bat": b"evil"}
    code, out = pull_hostile(
        listen, tmp_path, make_tar([manifest_member(listing(evil)), member("..\\evil.bat", b"evil")])
    )
    assert_refused(code, out, canary, capsys.readouterr().err, "unsafe file name")


def test_an_existing_output_folder_is_left_as_it_was(
    listen: Callable[[], Listener], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"the previous model")
    data = make_tar(
        [manifest_member(listing({"model.onnx": WEIGHTS, "vocab.txt": b"v"})), member("model.onnx", WEIGHTS)]
    )
    server = listen()
    serve(server, data)
    assert pull_from(server, out) == 3
    assert "missing from it: vocab.txt" in capsys.readouterr().err
    assert tree(out) == ["model.onnx"]
    assert (out / "model.onnx").read_bytes() == b"the previous model"


def test_unpack_streams_in_bounded_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        for i in range(32):
            fh.write(bytes([i]) * (1 << 20))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    manifest = json.dumps({"files": {"model.onnx": {"sha256": digest, "size": 32 << 20}}}).encode()
    bundle = tmp_path / "b.tar"
    with tarfile.open(bundle, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        tar.add(big, arcname="model.onnx")
    tracemalloc.start()
    try:
        unpack(bundle, tmp_path / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "out" / "model.onnx").stat().st_size == 32 << 20
    assert peak < 8 << 20, f"peak {peak / 1e6:.1f} MB for a 32 MiB member"


def test_unpack_refuses_a_bundle_as_an_exception(tmp_path: Path) -> None:
    """The function deploy code may call directly raises instead of exiting."""
    bundle = tmp_path / "evil.tar"
    bundle.write_bytes(make_tar([manifest_member(LISTED_GOOD), member("../escape.txt", b"bad")]))
    with pytest.raises(CliError, match="not listed in the manifest") as refused:
        unpack(bundle, tmp_path / "x")
    assert refused.value.code == 3
    assert not (tmp_path / "escape.txt").exists()
    assert list((tmp_path / "x").iterdir()) == []
