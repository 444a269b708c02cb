"""Content-addressed artifact store over Django storages (filesystem or S3).

Every blob lives under a key derived from its sha256 only
(``sha256/ab/cdef…``), never from a client-supplied name. A blob is hashed
while it is copied to a local temporary file and only then moved (filesystem:
an atomic rename) or uploaded (S3: an object appears only when complete) to
its key, so a reader never sees a partial or unverified blob.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
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
