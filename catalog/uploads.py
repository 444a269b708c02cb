"""Receiving request bodies into the artifact store in one pass.

Every byte of an upload is touched once in Python's process: read from the
connection into a reused buffer, hashed and written to a locked temporary
file beside the store, which is renamed into its content address only once
its sha256 (and, where announced, its size) checks. Nothing is held whole in
memory, and a reader never sees a partial or unverified blob.

* ``RequestBody`` — the unread body of a request, read with ``readinto``.
  Under gunicorn (a body with a Content-Length) it takes what gunicorn has
  already buffered, then reads the socket directly: gunicorn's own reader
  copies every byte five or six times through ``BytesIO`` buffers, which on
  a 2-CPU machine costs as much as the hashing (docs/BENCHMARKS.md, uploads).
  Anywhere else (the test client, runserver, another server) it reads
  ``request.read()``.
* ``body_store`` — a request body (the Hub's LFS PUT) into the store.
* ``multipart_store`` — a ``multipart/form-data`` body (the native API's
  version upload): a streaming parser whose file parts go into the store
  as they arrive.
* ``LockedTemporaryFileUploadHandler`` — Django's temporary-file handler for
  the other forms (datasets), locked so that a killed worker's partial file
  is swept.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import html
import io
import os
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpRequest
from django.utils.http import parse_header_parameters

from catalog.storage import StoredArtifact, artifact_key, artifact_storage

# One read buffer per upload, reused for every read (no allocation per chunk).
BUFFER_BYTES = 1024 * 1024
# A client that sends nothing for this long is dropped (the request fails;
# gunicorn's worker timeout only watches the worker, not a blocked read).
IDLE_TIMEOUT_S = 120.0


class UploadError(Exception):
    """The body cannot be received: ``status`` (400, 408, 413, 415) and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LockedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Django's temporary-file handler (files in ``FILE_UPLOAD_TEMP_DIR``,
    i.e. ``ARTIFACT_TMP_DIR``), with the file locked while its request lives:
    when the worker is killed mid-upload the kernel drops the lock and
    ``catalog.storage.artifact_tmp_sweep`` removes the partial file."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        fcntl.flock(self.file.fileno(), fcntl.LOCK_EX)


# --- reading the body -----------------------------------------------------------------


def content_length(request: HttpRequest) -> int | None:
    raw = request.META.get("CONTENT_LENGTH") or ""
    try:
        length = int(raw)
    except ValueError:
        return None
    return length if length >= 0 else None


class RequestBody:
    """The body of ``request`` (``length`` bytes, none read yet), read with
    ``readinto``. Use as a context manager: on exit the server's bookkeeping
    says how much was read, so that a connection whose body was not read to
    its end is closed rather than reused."""

    def __init__(self, request: HttpRequest, length: int) -> None:
        if getattr(request, "_read_started", False):
            raise UploadError(400, "The request body was already read.")
        self.request = request
        self.remaining = length
        self.direct = False
        self._held = memoryview(b"")
        self._sock: socket.socket | None = None
        self._gunicorn: tuple[Any, Any] | None = None
        self._timeout: float | None = None
        self._take_gunicorn()
        request._read_started = True  # type: ignore[attr-defined]

    def _take_gunicorn(self) -> None:
        """Read gunicorn's socket ourselves, after what gunicorn holds already.

        gunicorn (``gthread``/``sync`` workers) passes its socket as
        ``gunicorn.socket`` and the body as a ``Body`` over a ``LengthReader``
        over a ``SocketUnreader``: bytes already received sit in the body's
        and the unreader's buffers, ``LengthReader.length`` counts those not
        yet given out. Anything else — a chunked body, another server — keeps
        the portable path."""
        environ = getattr(self.request, "environ", None) or {}
        body = environ.get("wsgi.input")
        sock = environ.get("gunicorn.socket")
        reader = getattr(body, "reader", None)
        unreader = getattr(reader, "unreader", None)
        if (
            not isinstance(sock, socket.socket)
            or type(body).__module__ != "gunicorn.http.body"
            or type(reader).__name__ != "LengthReader"
            or getattr(unreader, "sock", None) is not sock
            or not isinstance(getattr(body, "buf", None), io.BytesIO)
            or not isinstance(getattr(unreader, "buf", None), io.BytesIO)
            or not isinstance(getattr(reader, "length", None), int)
            or not isinstance(getattr(body, "failed", None), bool)
        ):
            return
        assert isinstance(sock, socket.socket)
        assert body is not None
        assert reader is not None
        assert unreader is not None
        read_ahead = body.buf.getvalue()
        buffered = unreader.buf.getvalue()
        in_unreader = min(len(buffered), reader.length)
        if len(read_ahead) + reader.length != self.remaining:
            return  # not the state expected of an unread body: stay portable
        self._held = memoryview(read_ahead + buffered[:in_unreader])
        body.buf = io.BytesIO()
        unreader.buf = io.BytesIO()
        unreader.buf.write(buffered[in_unreader:])  # a pipelined next request
        reader.length -= in_unreader
        # Until the last byte is read, gunicorn must close the connection
        # instead of looking for a next request in the middle of this body.
        body.failed = True
        self._sock = sock
        self._gunicorn = (body, reader)
        self._timeout = sock.gettimeout()
        sock.settimeout(IDLE_TIMEOUT_S)
        self.direct = True

    def readinto(self, view: memoryview) -> int:
        """Up to ``len(view)`` bytes of the body into ``view``; 0 at its end.

        Raises:
            UploadError: the client closed the connection or went silent
                before the end of the body (400 / 408).
        """
        want = min(len(view), self.remaining)
        if want <= 0:
            return 0
        try:
            n = self._readinto(view, want)
        except TimeoutError:
            raise UploadError(408, f"The client sent nothing for {IDLE_TIMEOUT_S:.0f} s.") from None
        except OSError as exc:  # reset by the client, UnreadablePostError…
            raise UploadError(400, f"The connection broke before the end of the body ({exc}).") from None
        if n == 0:
            raise UploadError(400, f"The body ended {self.remaining} bytes before its Content-Length.")
        self.remaining -= n
        return n

    def _readinto(self, view: memoryview, want: int) -> int:
        if self._held:
            n = min(want, len(self._held))
            view[:n] = self._held[:n]
            self._held = self._held[n:]
        elif self._sock is not None:
            n = self._sock.recv_into(view[:want])
            if self._gunicorn is not None:
                self._gunicorn[1].length -= n
        else:
            data = self.request.read(want)
            n = len(data)
            view[:n] = data
        return n

    def readinto_full(self, view: memoryview) -> int:
        """Fill ``view`` (fewer bytes only at the end of the body)."""
        got = 0
        while got < len(view) and self.remaining:
            got += self.readinto(view[got:])
        return got

    def close(self) -> None:
        if self._gunicorn is not None:
            body, _ = self._gunicorn
            body.failed = self.remaining > 0
            self._gunicorn = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.settimeout(self._timeout)
            self._sock = None

    def __enter__(self) -> RequestBody:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- writing into the store ------------------------------------------------------------


class _LocalFile(File):  # type: ignore[type-arg]
    """A local file that FileSystemStorage renames into place."""

    def temporary_file_path(self) -> str:
        return str(self.name)


# Past this many bytes a file is hashed by a second thread, which reads back
# what was written (from the page cache, into its own buffer) while the
# request's thread goes on receiving and writing: sha256 is the largest cost
# per byte, and the two then run on two cores. Smaller files are hashed inline.
HASH_THREAD_AFTER_BYTES = 8 * 1024 * 1024


class _Hasher(threading.Thread):
    """Hashes a growing file up to what its writer says it has written."""

    def __init__(self, path: str, digest: Any, offset: int) -> None:
        super().__init__(name="upload-sha256", daemon=True)
        self.fd = os.open(path, os.O_RDONLY)
        self.digest = digest
        self.hashed = self.written = offset
        self.done = self.cancelled = False
        self.error: BaseException | None = None
        self.cond = threading.Condition()

    def advance(self, written: int) -> None:
        with self.cond:
            self.written = written
            self.cond.notify()

    def finish(self, *, cancel: bool = False) -> None:
        """Wait until every written byte is hashed (or, cancelled, stop soon)."""
        with self.cond:
            self.done = True
            self.cancelled = cancel
            self.cond.notify()
        self.join()
        os.close(self.fd)
        if self.error is not None and not cancel:
            raise self.error

    def run(self) -> None:
        buffer = memoryview(bytearray(BUFFER_BYTES))
        try:
            while True:
                with self.cond:
                    while self.hashed >= self.written and not self.done:
                        self.cond.wait()
                    target = self.written
                    if self.cancelled or (self.done and self.hashed >= target):
                        return
                while self.hashed < target and not self.cancelled:
                    n = os.preadv(self.fd, [buffer[: min(len(buffer), target - self.hashed)]], self.hashed)
                    if n <= 0:
                        raise OSError(f"the upload's temporary file ended at {self.hashed} bytes")
                    self.digest.update(buffer[:n])
                    self.hashed += n
        except BaseException as exc:  # re-raised by finish() in the writer's thread
            self.error = exc


class BlobWriter:
    """A temporary file beside the store (``put-…``, locked while its writer
    lives, so that the sweep removes it only after a kill) that hashes what
    is written to it; ``store()`` moves it to its content address."""

    def __init__(self) -> None:
        self.fd, self.path = tempfile.mkstemp(dir=settings.ARTIFACT_TMP_DIR, prefix="put-")
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.digest = hashlib.sha256()
        self.size = 0
        self._hasher: _Hasher | None = None

    def write(self, data: memoryview) -> None:
        if self._hasher is None:
            self.digest.update(data)
        self.size += len(data)
        while data:
            data = data[os.write(self.fd, data) :]
        if self._hasher is not None:
            self._hasher.advance(self.size)
        elif self.size >= HASH_THREAD_AFTER_BYTES:
            self._hasher = _Hasher(self.path, self.digest, self.size)
            self._hasher.start()

    def sha256(self) -> str:
        """The digest of everything written (waits for the hashing thread)."""
        if self._hasher is not None:
            hasher, self._hasher = self._hasher, None
            hasher.finish()
        return self.digest.hexdigest()

    def store(self, *, expected_sha256: str | None = None, expected_size: int | None = None) -> StoredArtifact:
        """Make the bytes visible under their sha256 (a rename on the
        filesystem store; an upload of the finished file with S3).

        Raises:
            UploadError: 400 when the bytes are not the announced ones;
                nothing is stored then.
        """
        sha256 = self.sha256()
        if expected_size is not None and self.size != expected_size:
            raise UploadError(400, f"The upload has {self.size} bytes, {expected_size} were announced.")
        if expected_sha256 is not None and sha256 != expected_sha256:
            raise UploadError(400, "The uploaded bytes do not match the announced sha256; nothing was stored.")
        storage = artifact_storage()
        key = artifact_key(sha256)
        if not storage.exists(key):
            with open(self.path, "rb") as fh:
                stored = storage.save(key, _LocalFile(fh, name=self.path))
            if stored != key:  # another request stored the same bytes meanwhile
                storage.delete(stored)
        return StoredArtifact(sha256=sha256, size=self.size)

    def close(self) -> None:
        """Release the lock and remove the file unless it was moved into the store."""
        if self._hasher is not None:
            self._hasher.finish(cancel=True)
            self._hasher = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if os.path.exists(self.path):
            os.unlink(self.path)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def body_store(request: HttpRequest, *, size: int, expected_sha256: str | None = None) -> StoredArtifact:
    """A request body of exactly ``size`` bytes into the store.

    Raises:
        UploadError: 400 for a body of another length or other bytes than
            announced, 411 without a Content-Length; nothing is stored then.
    """
    length = content_length(request)
    if length is None:
        raise UploadError(411, "Send a Content-Length header.")
    if length != size:
        raise UploadError(400, f"Content-Length is {length}, the object has {size} bytes.")
    buffer = memoryview(bytearray(BUFFER_BYTES))
    with RequestBody(request, length) as body, BlobWriter() as blob:
        while n := body.readinto_full(buffer):
            blob.write(buffer[:n])
        return blob.store(expected_sha256=expected_sha256, expected_size=size)


# --- multipart/form-data ---------------------------------------------------------------

# A part's header block larger than this is refused (Django's own limit is 8 KiB).
MAX_PART_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class ReceivedFile:
    """A file part now in the store: its name exactly as sent (the caller
    checks it), its digest and size."""

    field: str
    name: str
    sha256: str
    size: int


@dataclass
class MultipartBody:
    files: list[ReceivedFile] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)


def multipart_boundary(request: HttpRequest) -> bytes:
    """The boundary of a ``multipart/form-data`` request.

    Raises:
        UploadError: 415 for another media type, 400 for a bad boundary.
    """
    media, params = parse_header_parameters(request.META.get("CONTENT_TYPE", ""))
    if media != "multipart/form-data":
        raise UploadError(415, f"Send multipart/form-data, not {media or 'no Content-Type'!r}.")
    boundary = params.get("boundary", "")
    # RFC 2046: 1 to 70 characters from a restricted set.
    if not 1 <= len(boundary) <= 70 or not boundary.isascii() or not boundary.isprintable():
        raise UploadError(400, "The multipart boundary is missing or invalid.")
    return boundary.encode("ascii")


def _sent_file_name(raw: str) -> str:
    """The file name as the client meant it: HTML character references
    undone (browsers send some names that way), directories kept so that the
    caller can refuse them, anything unprintable made visible as U+FFFD."""
    name = html.unescape(raw)
    return "".join(c if c.isprintable() else "\ufffd" for c in name)


def _part_headers(block: bytes) -> tuple[str, str | None, str]:
    """(field name, file name or None, transfer encoding) of a part.

    Raises:
        UploadError: 400 for a part that is not form data.
    """
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadError(400, "A multipart part's headers are not UTF-8.") from None
    disposition: tuple[str, dict[str, str]] | None = None
    encoding = ""
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            raise UploadError(400, f"Malformed multipart header line: {line[:100]!r}.")
        name = name.strip().lower()
        try:
            if name == "content-disposition":
                disposition = parse_header_parameters(value)
            elif name == "content-transfer-encoding":
                encoding = value.strip().lower()
        except ValueError as exc:
            raise UploadError(400, f"Malformed multipart header: {exc}") from None
    if disposition is None or disposition[0] != "form-data" or "name" not in disposition[1]:
        raise UploadError(400, "Every multipart part needs 'Content-Disposition: form-data; name=…'.")
    params = disposition[1]
    file_name = params.get("filename")
    return params["name"], (None if file_name is None else _sent_file_name(file_name)), encoding


class _Scanner:
    """The body as a window over one reused buffer: find a delimiter, hand
    out the bytes before it as views (no copies), refill as needed."""

    def __init__(self, body: RequestBody, capacity: int) -> None:
        self.body = body
        # The body is read as if it began with CRLF, so that the first
        # boundary is found like every other ("CRLF--boundary").
        self.buf = bytearray(capacity)
        self.view = memoryview(self.buf)
        self.view[:2] = b"\r\n"
        self.start, self.end = 0, 2

    def fill(self) -> bool:
        """Read more of the body behind what is held; False at its end."""
        if self.start:
            held = self.end - self.start
            self.view[:held] = self.view[self.start : self.end]
            self.start, self.end = 0, held
        if self.end == len(self.buf):
            raise UploadError(400, "A multipart part's headers are too long.")
        n = self.body.readinto_full(self.view[self.end :])
        self.end += n
        return n > 0

    def find(self, needle: bytes) -> int:
        return self.buf.find(needle, self.start, self.end)


def multipart_store(
    request: HttpRequest,
    result: MultipartBody,
    *,
    file_fields: frozenset[str],
    max_files: int,
    max_field_bytes: int,
    max_fields: int,
) -> MultipartBody:
    """Parse a ``multipart/form-data`` body as it arrives: the file parts of
    ``file_fields`` stream into the store (hashed while written, renamed into
    place when complete); other fields are kept as text (at most
    ``max_fields`` of them, ``max_field_bytes`` in all); file parts of other
    fields, and empty file inputs, are read and dropped.

    ``result`` is filled as the parts arrive: on an error it lists the blobs
    stored so far (the caller discards those that nothing else uses).

    Raises:
        UploadError: 400 for a malformed body, 411 without a Content-Length,
            413 for too many files or fields, 415 for another media type.
    """
    boundary = multipart_boundary(request)
    length = content_length(request)
    if length is None:
        raise UploadError(411, "Send a Content-Length header.")
    delimiter = b"\r\n--" + boundary
    keep = len(delimiter) + 4  # never hand out what may be the start of a delimiter
    field_bytes = 0
    with RequestBody(request, length) as body:
        scan = _Scanner(body, BUFFER_BYTES + MAX_PART_HEADER_BYTES)
        # Preamble: everything before the first delimiter is ignored.
        while (at := scan.find(delimiter)) < 0:
            scan.start = max(scan.start, scan.end - len(delimiter))
            if not scan.fill():
                raise UploadError(400, "The body holds no multipart boundary.")
        scan.start = at + len(delimiter)
        while True:
            # After a delimiter: "--" ends the body, CRLF starts a part
            # (transport padding — spaces, tabs — may come before it).
            while (eol := scan.find(b"\r\n")) < 0 and scan.end - scan.start < 2 + 64:
                if not scan.fill():
                    break
            if bytes(scan.view[scan.start : scan.start + 2]) == b"--":
                break
            if eol < 0 or bytes(scan.view[scan.start : eol]).strip(b" \t"):
                raise UploadError(400, "Malformed multipart body: no line break after a boundary.")
            scan.start = eol + 2
            while (head_end := scan.find(b"\r\n\r\n")) < 0:
                if scan.end - scan.start > MAX_PART_HEADER_BYTES:
                    raise UploadError(400, "A multipart part's headers are too long.")
                if not scan.fill():
                    raise UploadError(400, "The multipart body ends inside a part's headers.")
            name, file_name, encoding = _part_headers(bytes(scan.view[scan.start : head_end]))
            scan.start = head_end + 4
            if encoding not in ("", "binary", "8bit", "7bit"):
                raise UploadError(400, f"Content-Transfer-Encoding {encoding!r} is not supported.")
            if file_name is not None and file_name and name in file_fields:
                if len(result.files) >= max_files:
                    raise UploadError(413, f"Too many files: at most {max_files} per upload.")
                with BlobWriter() as blob:
                    _part_copy(scan, delimiter, keep, blob.write)
                    stored = blob.store()
                result.files.append(ReceivedFile(name, file_name, stored.sha256, stored.size))
            elif file_name is not None:
                _part_copy(scan, delimiter, keep, lambda data: None)
            else:
                value = bytearray()

                def collect(data: memoryview, value: bytearray = value) -> None:
                    nonlocal field_bytes
                    field_bytes += len(data)
                    if field_bytes > max_field_bytes:
                        raise UploadError(413, f"The form's fields exceed {max_field_bytes} bytes.")
                    value += data

                _part_copy(scan, delimiter, keep, collect)
                if sum(len(v) for v in result.fields.values()) >= max_fields:
                    raise UploadError(413, f"Too many form fields: at most {max_fields}.")
                try:
                    text = value.decode("utf-8")
                except UnicodeDecodeError:
                    raise UploadError(400, f"The form field {name!r} is not UTF-8.") from None
                result.fields.setdefault(name, []).append(text)
        # The epilogue, if any, is read and ignored.
        scan.start = scan.end
        while scan.fill():
            scan.start = scan.end
    return result


def _part_copy(scan: _Scanner, delimiter: bytes, keep: int, sink: Any) -> None:
    """Hand the part's bytes up to the next delimiter to ``sink`` (views into
    the scanner's buffer) and stop just after the delimiter."""
    while True:
        at = scan.find(delimiter)
        if at >= 0:
            if at > scan.start:
                sink(scan.view[scan.start : at])
            scan.start = at + len(delimiter)
            return
        safe = scan.end - keep
        if safe > scan.start:
            sink(scan.view[scan.start : safe])
            scan.start = safe
        if not scan.fill():
            raise UploadError(400, "The multipart body ends inside a part (no closing boundary).")
