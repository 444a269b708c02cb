"""Content-addressed artifact store over Django storages (filesystem or S3).

Every blob lives under a key derived from its sha256 only
(``sha256/ab/cdef…``), never from a client-supplied name. A blob is hashed
while it is copied to a local temporary file and only then moved (filesystem:
an atomic rename) or uploaded (S3: an object appears only when complete) to
its key, so a reader never sees a partial or unverified blob.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages

CHUNK = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class ArtifactError(Exception):
    pass


class ArtifactIntegrityError(ArtifactError):
    pass


@dataclass(frozen=True)
class StoredArtifact:
    sha256: str
    size: int

    @property
    def key(self) -> str:
        return artifact_key(self.sha256)


def artifact_storage() -> Storage:
    return storages["artifacts"]


def artifact_key(sha256: str) -> str:
    if not _SHA256.match(sha256):
        raise ArtifactError(f"not a sha256 digest: {sha256!r}")
    return f"sha256/{sha256[:2]}/{sha256[2:]}"


def safe_file_name(name: str) -> str:
    """Validate a name used inside a bundle or materialised directory."""
    if not _SAFE_NAME.match(name) or ".." in name:
        raise ArtifactError(f"unsafe file name: {name!r}")
    return name


class _VerifiedTempFile(File):  # type: ignore[type-arg]
    """A local temporary file that FileSystemStorage can rename into place."""

    def temporary_file_path(self) -> str:
        return str(self.name)


def artifact_put(source: BinaryIO | IO[bytes], *, expected_sha256: str | None = None) -> StoredArtifact:
    """Store the bytes of ``source`` and return their digest and size.

    Raises:
        ArtifactIntegrityError: the bytes do not hash to ``expected_sha256``;
            nothing is stored then.
    """
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=settings.ARTIFACT_TMP_DIR, prefix="put-")
    # Held until the fd closes: a sweep removes the file only once its writer
    # is gone (killed mid-upload), never while it is still being written.
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with os.fdopen(fd, "wb") as tmp:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                tmp.write(chunk)
        sha256 = digest.hexdigest()
        if expected_sha256 is not None and sha256 != expected_sha256:
            raise ArtifactIntegrityError(f"expected sha256 {expected_sha256}, got {sha256}")
        storage = artifact_storage()
        key = artifact_key(sha256)
        if not storage.exists(key):
            with open(tmp_name, "rb") as fh:
                stored_key = storage.save(key, _VerifiedTempFile(fh, name=tmp_name))
            if stored_key != key:  # pragma: no cover - storage misconfigured
                raise ArtifactError(f"storage stored {key} as {stored_key}")
        return StoredArtifact(sha256=sha256, size=size)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def artifact_put_path(path: str | Path, *, expected_sha256: str | None = None) -> StoredArtifact:
    with open(path, "rb") as fh:
        return artifact_put(fh, expected_sha256=expected_sha256)


def artifact_exists(sha256: str) -> bool:
    return artifact_storage().exists(artifact_key(sha256))


def artifact_open(sha256: str) -> IO[bytes]:
    return artifact_storage().open(artifact_key(sha256), "rb")


def artifact_local_path(sha256: str) -> Path | None:
    """The blob's path on local disk, when the store is a filesystem."""
    try:
        return Path(artifact_storage().path(artifact_key(sha256)))
    except NotImplementedError:
        return None


class _RangeReader:
    """A file-like view of ``length`` bytes from ``start`` of an open blob."""

    def __init__(self, fh: IO[bytes], start: int, length: int) -> None:
        self.fh, self.remaining = fh, length
        fh.seek(start)

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        size = self.remaining if size < 0 else min(size, self.remaining)
        data = self.fh.read(size)
        self.remaining -= len(data)
        return data

    def close(self) -> None:
        self.fh.close()

    def __enter__(self) -> _RangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def artifact_open_range(sha256: str, start: int, length: int) -> IO[bytes]:
    """``length`` bytes from ``start``, read in whatever chunks the caller asks
    for (constant memory whatever the blob's size)."""
    return _RangeReader(artifact_open(sha256), start, length)  # type: ignore[return-value]


def artifact_materialize(files: list[dict[str, object]], dest: Path) -> Path:
    """Copy the listed blobs into ``dest`` under their (validated) names."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in files:
        name = safe_file_name(str(entry["name"]))
        target = dest / name
        local = artifact_local_path(str(entry["sha256"]))
        if local is not None:
            try:
                # Same filesystem: a hard link costs nothing; blobs are never
                # written in place, so the link cannot change under a reader.
                os.link(local, target)
            except OSError:
                shutil.copyfile(local, target)
        else:
            with artifact_open(str(entry["sha256"])) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
    return dest


_OWNER = ".owner"


@contextmanager
def artifact_tmpdir() -> Iterator[Path]:
    """A scratch folder under ``ARTIFACT_TMP_DIR``, removed on exit; if its
    process is killed (SIGKILL, OOM), ``artifact_tmp_sweep`` removes it later.

    The folder holds a lock on its ``.owner`` file for as long as the process
    lives (the kernel drops it when the process dies)."""
    path = Path(tempfile.mkdtemp(dir=settings.ARTIFACT_TMP_DIR, prefix="work-"))
    owner = open(path / _OWNER, "w")  # noqa: SIM115 - held for the folder's lifetime
    try:
        fcntl.flock(owner, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        owner.close()


def _unowned(lock_path: Path) -> bool:
    """True when no live process holds ``lock_path``'s lock."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def artifact_tmp_sweep(*, grace_s: float = 3600.0) -> list[str]:
    """Remove what killed processes left in ``ARTIFACT_TMP_DIR``: scratch
    folders, ``put-`` files and upload files whose owner's lock is free. Entries without a
    lock (made by older code, or in the instant before their lock is taken)
    go only once untouched for ``grace_s``. Returns the names removed."""
    root = Path(settings.ARTIFACT_TMP_DIR)
    removed: list[str] = []
    if not root.is_dir():
        return removed
    now = time.time()
    for entry in root.iterdir():
        try:
            age = now - entry.lstat().st_mtime
            if age < 2:  # just made: its lock may not be taken yet
                continue
            if entry.is_dir() and not entry.is_symlink():
                owner = entry / _OWNER
                if _unowned(owner) if owner.exists() else age > grace_s:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry.name)
            elif entry.is_file() and not entry.is_symlink():
                # ``put-`` files and upload files are locked by their writer.
                locked_kind = entry.name.startswith("put-") or ".upload" in entry.name
                if _unowned(entry) if locked_kind else age > grace_s:
                    entry.unlink(missing_ok=True)
                    removed.append(entry.name)
        except OSError:  # removed by its owner meanwhile
            continue
    return removed
