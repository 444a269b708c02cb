"""catalog.uploads: the streaming multipart parser, the one-pass body
receiver, and the direct read of gunicorn's socket (with gunicorn's own
parser on a socket pair: what it reads next must still be the next request)."""

from __future__ import annotations

import contextlib
import hashlib
import random
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from django.test import RequestFactory

from catalog import uploads
from catalog.storage import artifact_key
from catalog.uploads import MultipartBody, UploadError, body_store, multipart_store

BOUNDARY = "----bOuNdArY7Mq"


def part(name: str, value: bytes, filename: str | None = None, extra: str = "") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"Content-Disposition: {disposition}\r\n{extra}"
    if filename is not None:
        head += "Content-Type: application/octet-stream\r\n"
    return f"--{BOUNDARY}\r\n{head}\r\n".encode() + value + b"\r\n"


def form(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    return preamble + b"".join(parts) + f"--{BOUNDARY}--\r\n".encode() + epilogue


def request_for(body: bytes, content_type: str | None = None, **meta: Any) -> Any:
    request = RequestFactory().generic(
        "POST", "/upload", data=body, content_type=content_type or f"multipart/form-data; boundary={BOUNDARY}"
    )
    request.META.update(meta)
    return request


def parse(body: bytes, **kwargs: Any) -> MultipartBody:
    result = MultipartBody()
    options = {"file_fields": frozenset({"files"}), "max_files": 10, "max_field_bytes": 10_000, "max_fields": 10}
    multipart_store(request_for(body), result, **{**options, **kwargs})
    return result


def stored_bytes(store: Path, sha256: str) -> bytes:
    return (store / artifact_key(sha256)).read_bytes()


def temp_files(settings: Any) -> list[Path]:
    return [p for p in Path(settings.ARTIFACT_TMP_DIR).iterdir()]


def test_files_go_into_the_store_and_fields_are_kept(artifact_store: Path, settings: Any) -> None:
    weights = bytes(range(256)) * 5000
    config = b'{"model_type": "bert"}'
    body = form(
        part("files", weights, "model.safetensors"),
        part("message", "first version, ünïcode".encode()),
        part("files", config, "config.json"),
    )
    result = parse(body)
    assert [(f.field, f.name, f.size) for f in result.files] == [
        ("files", "model.safetensors", len(weights)),
        ("files", "config.json", len(config)),
    ]
    assert result.files[0].sha256 == hashlib.sha256(weights).hexdigest()
    assert stored_bytes(artifact_store, result.files[0].sha256) == weights
    assert stored_bytes(artifact_store, result.files[1].sha256) == config
    assert result.fields == {"message": ["first version, ünïcode"]}
    assert temp_files(settings) == []


def test_names_arrive_as_sent_for_the_caller_to_check() -> None:
    result = parse(form(part("files", b"a", "../../etc/passwd"), part("files", b"b", "a&#47;b.json")))
    assert [f.name for f in result.files] == ["../../etc/passwd", "a/b.json"]


@pytest.mark.parametrize(("buffer", "hash_thread_after"), [(7, 10**9), (64, 10**9), (1000, 10**9), (64, 100)])
def test_delimiter_lookalikes_across_every_buffer_edge_stay_in_the_file(
    monkeypatch: pytest.MonkeyPatch, artifact_store: Path, buffer: int, hash_thread_after: int
) -> None:
    """Tiny buffers put every possible cut inside a delimiter or its look-alikes
    (and, the last case, the digest comes from the hashing thread)."""
    monkeypatch.setattr(uploads, "BUFFER_BYTES", buffer)
    monkeypatch.setattr(uploads, "HASH_THREAD_AFTER_BYTES", hash_thread_after)
    monkeypatch.setattr(uploads, "MAX_PART_HEADER_BYTES", 200)
    rng = random.Random(buffer)
    near = [b"\r\n--", b"\r\n--" + BOUNDARY.encode()[:-1], b"--" + BOUNDARY.encode(), b"\r", b"\n", b"\r\n\r\n"]
    content = b"".join(rng.choice(near) + rng.randbytes(rng.randrange(0, 40)) for _ in range(300))
    body = form(part("files", content, "weights.safetensors"), part("files", b"", "empty.txt"), part("message", b"m"))
    result = parse(body, max_field_bytes=10)
    assert [stored_bytes(artifact_store, f.sha256) for f in result.files] == [content, b""]
    assert result.files[0].sha256 == hashlib.sha256(content).hexdigest()
    assert result.fields == {"message": ["m"]}


def test_preamble_padding_and_epilogue_are_ignored(artifact_store: Path) -> None:
    body = form(part("files", b"data", "a.txt"), preamble=b"ignore me\r\n", epilogue=b"trailing words")
    body = body.replace(f"--{BOUNDARY}\r\n".encode(), f"--{BOUNDARY} \t\r\n".encode(), 1)
    assert [stored_bytes(artifact_store, f.sha256) for f in parse(body).files] == [b"data"]


def test_other_file_fields_and_empty_file_inputs_are_dropped(artifact_store: Path) -> None:
    result = parse(form(part("other", b"not kept", "x.bin"), part("files", b"", ""), part("files", b"kept", "k.txt")))
    assert [f.name for f in result.files] == ["k.txt"]
    assert [p.name for p in artifact_store.rglob("*") if p.is_file()] == [hashlib.sha256(b"kept").hexdigest()[2:]]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (form(part("files", b"x", "a"), part("files", b"y", "b"), part("files", b"z", "c")), 413, "Too many files"),
        (form(part("message", b"m" * 50)), 413, "fields exceed"),
        (form(*[part(f"f{i}", b"v") for i in range(4)]), 413, "Too many form fields"),
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="a"\r\n\r\nabc'.encode(),
            400,
            "ends inside a part",
        ),  # fmt: skip
        (b"no boundary here at all", 400, "no multipart boundary"),
        (f"--{BOUNDARY}\r\n".encode() + b"X-Long: " + b"h" * 20_000, 400, "headers are too long"),
        (f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nabc\r\n--{BOUNDARY}--".encode(), 400, "Content-Disposition"),
        (form(part("files", b"YWJj", "a", extra="Content-Transfer-Encoding: base64\r\n")), 400, "base64"),
        (f"--{BOUNDARY}junk\r\n".encode(), 400, "no line break"),
        (form(part("message", b"\xff\xfe")), 400, "not UTF-8"),
    ],
)
def test_bad_bodies_are_refused_and_leave_no_temporary_file(
    body: bytes, status: int, words: str, settings: Any, artifact_store: Path
) -> None:
    result = MultipartBody()
    with pytest.raises(UploadError) as refused:
        multipart_store(
            request_for(body), result, file_fields=frozenset({"files"}), max_files=2, max_field_bytes=20, max_fields=3
        )
    assert refused.value.status == status
    assert words in refused.value.message
    assert temp_files(settings) == []
    # What was stored before the error is listed, for the caller to discard.
    assert len(result.files) == (2 if "Too many files" in words else 0)


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("application/json", 415), ("multipart/form-data", 400), ("multipart/form-data; boundary=" + "b" * 71, 400)],
)
def test_media_type_and_boundary_are_checked_before_reading(content_type: str, status: int) -> None:
    with pytest.raises(UploadError) as refused:
        multipart_store(
            request_for(b"x", content_type=content_type),
            MultipartBody(),
            file_fields=frozenset({"files"}),
            max_files=1,
            max_field_bytes=1,
            max_fields=1,
        )
    assert refused.value.status == status


def test_a_body_shorter_than_its_content_length_is_refused(settings: Any) -> None:
    body = form(part("files", b"abc" * 100, "a.bin"))
    request = request_for(body[:-20])
    request.META["CONTENT_LENGTH"] = str(len(body))
    with pytest.raises(UploadError) as refused:
        multipart_store(
            request, MultipartBody(), file_fields=frozenset({"files"}), max_files=1, max_field_bytes=1, max_fields=1
        )
    assert refused.value.status == 400
    assert temp_files(settings) == []


def test_a_connection_that_breaks_is_a_400_and_leaves_nothing(settings: Any) -> None:
    from django.http import UnreadablePostError

    data = b"z" * 100_000
    request = request_for(data, content_type="application/octet-stream")
    reads = iter([data[:1000]])

    def read(size: int) -> bytes:
        try:
            return next(reads)
        except StopIteration:
            raise UnreadablePostError("connection reset by peer") from None

    request.read = read
    with pytest.raises(UploadError) as refused:
        body_store(request, size=len(data))
    assert refused.value.status == 400
    assert "connection broke" in refused.value.message
    assert temp_files(settings) == []


def test_body_store_checks_size_and_digest_before_anything_is_visible(artifact_store: Path, settings: Any) -> None:
    data = b"lfs object " * 10_000
    sha = hashlib.sha256(data).hexdigest()
    for expected_sha, size, status in (("0" * 64, len(data), 400), (sha, len(data) + 1, 400)):
        with pytest.raises(UploadError) as refused:
            body_store(
                request_for(data, content_type="application/octet-stream"), size=size, expected_sha256=expected_sha
            )
        assert refused.value.status == status
    assert not any(p.is_file() for p in artifact_store.rglob("*"))
    assert temp_files(settings) == []
    stored = body_store(request_for(data, content_type="application/octet-stream"), size=len(data), expected_sha256=sha)
    assert (stored.sha256, stored.size) == (sha, len(data))
    assert stored_bytes(artifact_store, sha) == data
    assert temp_files(settings) == []


@pytest.mark.parametrize("buffer", [1000, 1024 * 1024])
def test_large_files_are_hashed_by_a_second_thread_reading_back_what_was_written(
    monkeypatch: pytest.MonkeyPatch, artifact_store: Path, settings: Any, buffer: int
) -> None:
    monkeypatch.setattr(uploads, "BUFFER_BYTES", buffer)
    monkeypatch.setattr(uploads, "HASH_THREAD_AFTER_BYTES", 5000)
    started: list[int] = []
    original = uploads._Hasher.start

    def spy(self: Any) -> None:
        started.append(self.hashed)
        original(self)

    monkeypatch.setattr(uploads._Hasher, "start", spy)
    data = random.Random(buffer).randbytes(3 * 1024 * 1024 + 17)
    sha = hashlib.sha256(data).hexdigest()
    stored = body_store(request_for(data, content_type="application/octet-stream"), size=len(data), expected_sha256=sha)
    assert stored.sha256 == sha
    assert len(started) == 1
    assert 5000 <= started[0] < 5000 + buffer  # the thread takes over after the inline part
    with pytest.raises(UploadError):  # a wrong digest from the thread is still caught
        body_store(request_for(data, content_type="application/octet-stream"), size=len(data), expected_sha256="0" * 64)
    assert temp_files(settings) == []


def test_a_writer_closed_without_storing_stops_its_thread_and_removes_the_file(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setattr(uploads, "HASH_THREAD_AFTER_BYTES", 10)
    with uploads.BlobWriter() as blob:
        blob.write(memoryview(b"x" * 100_000))
        hasher = blob._hasher
        assert hasher is not None
    assert not hasher.is_alive()
    assert temp_files(settings) == []


# --- gunicorn: the socket read directly -------------------------------------------------


def gunicorn_request(raw: bytes) -> tuple[Any, Any, socket.socket, threading.Thread]:
    """gunicorn's parser on one end of a socket pair, ``raw`` sent from the
    other: (the Django request gunicorn's WSGI environ makes, the parser, the
    client socket, the sending thread)."""
    from django.core.handlers.wsgi import WSGIRequest
    from gunicorn.config import Config
    from gunicorn.http import wsgi
    from gunicorn.http.parser import RequestParser

    server, client = socket.socketpair()

    def send() -> None:
        with contextlib.suppress(OSError):  # the server may stop reading and close
            client.sendall(raw)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    cfg = Config()
    parser = RequestParser(cfg, server, ("127.0.0.1", 1))
    message = next(parser)
    _, environ = wsgi.create(message, server, ("127.0.0.1", 1), ("127.0.0.1", 2), cfg)
    return WSGIRequest(environ), parser, client, sender


@pytest.mark.parametrize("size", [10, 300_000, 3 * 1024 * 1024 + 5])
def test_under_gunicorn_the_body_is_read_from_the_socket_and_the_next_request_still_parses(
    artifact_store: Path, size: int
) -> None:
    data = random.Random(size).randbytes(size)
    sha = hashlib.sha256(data).hexdigest()
    first = f"PUT /hf/lfs/upload/x HTTP/1.1\r\nHost: h\r\nContent-Length: {size}\r\n\r\n".encode() + data
    request, parser, client, sender = gunicorn_request(first + b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
    reads: list[bool] = []
    original = uploads.RequestBody._take_gunicorn

    def spy(self: uploads.RequestBody) -> None:
        original(self)
        reads.append(self.direct)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(uploads.RequestBody, "_take_gunicorn", spy)
        stored = body_store(request, size=size, expected_sha256=sha)
    assert reads == [True]
    assert stored_bytes(artifact_store, stored.sha256) == data
    # gunicorn's keep-alive: the next request on the connection is found whole.
    after = next(parser)
    assert (after.method, after.path) == ("GET", "/next")
    sender.join(5)
    client.close()


def test_under_gunicorn_a_body_not_read_to_its_end_closes_the_connection(artifact_store: Path) -> None:
    data = b"y" * 500_000
    raw = f"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data
    request, parser, client, sender = gunicorn_request(raw)
    with pytest.raises(UploadError):
        body_store(request, size=len(data), expected_sha256="0" * 64)  # read whole, refused
    assert parser.finish_body() is True
    request, parser, client, sender = gunicorn_request(raw)
    body = uploads.RequestBody(request, len(data))
    with body:
        body.readinto(memoryview(bytearray(1000)))
    # Stopped mid-body: gunicorn must not look for a request in what is left.
    assert parser.finish_body() is False
    request.environ["gunicorn.socket"].close()
    sender.join(5)
    client.close()
