"""Content-addressed artifact store over Django storages (filesystem or S3).

Every blob lives under a key derived from its sha256 only
(``sha256/ab/cdef…``), never from a client-supplied name. A blob is hashed
while it is copied to a local temporary file and only then moved (filesystem:
an atomic rename) or uploaded (S3: an object appears only when complete) to
its key, so a reader never sees a partial or unverified blob.

A large model file (a bundle tar, an ONNX graph, a safetensors file) can be
stored *split* (``artifact_put_path(..., split=True)``): each large tensor
becomes a content-addressed chunk (``chunks/ab/cdef…``, keyed by the chunk's
own sha256), the bytes between them one "glue" chunk, and a small recipe
(``composites/ab/cdef…``, keyed by the whole file's sha256) lists the pieces
in order. Identical tensors in two files — a frozen encoder in a fine-tune and
in its base — are then stored once. Readers do not see the difference:
``artifact_open`` / ``artifact_open_range`` / ``artifact_exists`` /
``artifact_size`` / ``artifact_materialize`` take the file's sha256 and
answer with the same bytes whether the file is a plain blob or a composite;
only ``artifact_local_path`` (a plain file on disk) and
``artifact_presigned_url`` (one object in the bucket) have nothing to give for
a composite, and their callers fall back to streaming. Chunks live apart from
plain blobs, so deleting an unreferenced plain blob never breaks a composite.
Chunks are never deleted (a future sweep would keep those that a recipe names).
"""

from __future__ import annotations

import bisect
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages

from catalog.storage_layout import file_spans

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


def chunk_key(sha256: str) -> str:
    """Where a piece of a split file lives (apart from plain blobs)."""
    return "chunks/" + artifact_key(sha256).removeprefix("sha256/")


def composite_key(sha256: str) -> str:
    """Where the recipe of a split file (keyed by the whole file's sha256) lives."""
    return "composites/" + artifact_key(sha256).removeprefix("sha256/")


def safe_file_name(name: str) -> str:
    """Validate a name used inside a bundle or materialised directory."""
    if not _SAFE_NAME.match(name) or ".." in name:
        raise ArtifactError(f"unsafe file name: {name!r}")
    return name


class _VerifiedTempFile(File):  # type: ignore[type-arg]
    """A local temporary file that FileSystemStorage can rename into place."""

    def temporary_file_path(self) -> str:
        return str(self.name)


@contextmanager
def _locked_tmp() -> Iterator[tuple[int, str]]:
    """A new ``put-`` file in ``ARTIFACT_TMP_DIR`` (fd, name), locked for as long as
    it exists so that ``artifact_tmp_sweep`` leaves it alone; removed on exit."""
    fd, tmp_name = tempfile.mkstemp(dir=settings.ARTIFACT_TMP_DIR, prefix="put-")
    # Held until the fd closes: a sweep removes the file only once its writer
    # is gone (killed mid-upload), never while it is still being written.
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield fd, tmp_name
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def _save_verified(key: str, tmp_name: str) -> None:
    """Move (filesystem) or upload (S3) a complete, verified local file to ``key``."""
    storage = artifact_storage()
    if storage.exists(key):
        return
    with open(tmp_name, "rb") as fh:
        stored_key = storage.save(key, _VerifiedTempFile(fh, name=tmp_name))
    if stored_key != key:  # pragma: no cover - storage misconfigured
        raise ArtifactError(f"storage stored {key} as {stored_key}")


def _put(source: BinaryIO | IO[bytes], key_of: Callable[[str], str], expected_sha256: str | None) -> StoredArtifact:
    digest = hashlib.sha256()
    size = 0
    with _locked_tmp() as (fd, tmp_name):
        with os.fdopen(fd, "wb") as tmp:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                tmp.write(chunk)
        sha256 = digest.hexdigest()
        if expected_sha256 is not None and sha256 != expected_sha256:
            raise ArtifactIntegrityError(f"expected sha256 {expected_sha256}, got {sha256}")
        if key_of is not artifact_key or not _composite_exists(sha256):
            _save_verified(key_of(sha256), tmp_name)
        return StoredArtifact(sha256=sha256, size=size)


def artifact_put(source: BinaryIO | IO[bytes], *, expected_sha256: str | None = None) -> StoredArtifact:
    """Store the bytes of ``source`` and return their digest and size.

    Raises:
        ArtifactIntegrityError: the bytes do not hash to ``expected_sha256``;
            nothing is stored then.
    """
    return _put(source, artifact_key, expected_sha256)


def _sha256_of(fh: IO[bytes], start: int, length: int) -> str:
    digest = hashlib.sha256()
    piece = _RangeReader(fh, start, length)
    while data := piece.read(CHUNK):
        digest.update(data)
    return digest.hexdigest()


def _put_chunk(fh: IO[bytes], start: int, length: int) -> str:
    """Store ``length`` bytes from ``start`` of ``fh`` as a chunk; returns its
    sha256. Hashed first, so that a chunk already stored (the common case for
    the tensors of a fine-tune's frozen encoder) is not copied at all."""
    sha256 = _sha256_of(fh, start, length)
    if not artifact_storage().exists(chunk_key(sha256)) and not _link_plain_as_chunk(sha256):
        _put(_RangeReader(fh, start, length), chunk_key, sha256)  # type: ignore[arg-type]
    return sha256


def _link_plain_as_chunk(sha256: str) -> bool:
    """On a filesystem store, a chunk whose bytes are already a whole blob (a
    bundle's tokenizer member and the version's own tokenizer file) becomes a
    hard link to it: no second copy on disk. Both names stay valid if the
    other is deleted. False when there is no such blob or no local disk."""
    plain = artifact_local_path(sha256)
    if plain is None:
        return False
    try:
        target = Path(artifact_storage().path(chunk_key(sha256)))
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".link-{os.getpid()}-{target.name}")
        os.link(plain, staging)
        os.replace(staging, target)  # atomic: a reader sees the whole chunk or none
    except OSError:
        return False
    return True


def artifact_put_path(path: str | Path, *, expected_sha256: str | None = None, split: bool = False) -> StoredArtifact:
    """Store a local file. With ``split``, a bundle tar, ONNX graph or
    safetensors file is stored as a composite of its tensors (see the module
    docstring); a file with no tensor worth a chunk is stored whole.

    Raises:
        ArtifactIntegrityError: the file does not hash to ``expected_sha256``;
            nothing is stored then.
    """
    path = Path(path)
    spans = file_spans(path) if split else []
    if not spans:
        with open(path, "rb") as fh:
            return artifact_put(fh, expected_sha256=expected_sha256)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        sha256 = _sha256_of(fh, 0, size)
        if expected_sha256 is not None and sha256 != expected_sha256:
            raise ArtifactIntegrityError(f"expected sha256 {expected_sha256}, got {sha256}")
        stored = StoredArtifact(sha256=sha256, size=size)
        if artifact_storage().exists(artifact_key(sha256)) or _composite_exists(sha256):
            return stored
        # Pieces in file order: [glue offset, length] placeholders, then the
        # glue (all bytes outside the spans, concatenated) becomes one chunk.
        segments: list[list[Any]] = []
        with _locked_tmp() as (fd, glue_name):
            with os.fdopen(fd, "wb") as glue:
                pos = glued = 0
                for start, end in [*spans, (size, size)]:
                    if start > pos:
                        segments.append([None, glued, start - pos])
                        piece = _RangeReader(fh, pos, start - pos)
                        while data := piece.read(CHUNK):
                            glue.write(data)
                        glued += start - pos
                    if end > start:
                        segments.append([_put_chunk(fh, start, end - start), 0, end - start])
                    pos = end
            if glued:
                with open(glue_name, "rb") as glue_fh:
                    glue_sha = _put_chunk(glue_fh, 0, glued)
                for segment in segments:
                    if segment[0] is None:
                        segment[0] = glue_sha
        # The recipe goes last: a reader finds it only once every chunk is in.
        recipe = json.dumps({"sha256": sha256, "size": size, "segments": segments}, separators=(",", ":"))
        with _locked_tmp() as (fd, recipe_name):
            with os.fdopen(fd, "w") as out:
                out.write(recipe)
            _save_verified(composite_key(sha256), recipe_name)
        return stored


@dataclass(frozen=True)
class _Recipe:
    sha256: str
    size: int
    segments: tuple[tuple[str, int, int], ...]  # (chunk sha256, offset in chunk, length)

    @property
    def chunks(self) -> set[str]:
        return {sha for sha, _, _ in self.segments}


def _composite_exists(sha256: str) -> bool:
    return artifact_storage().exists(composite_key(sha256))


def _recipe(sha256: str) -> _Recipe | None:
    """The recipe of a split file, or None when there is none."""
    try:
        with artifact_storage().open(composite_key(sha256), "rb") as fh:
            raw = fh.read()
    except (FileNotFoundError, OSError):
        return None
    try:
        data = json.loads(raw)
        segments = tuple((str(s), int(o), int(n)) for s, o, n in data["segments"])
        size = int(data["size"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"the recipe of {sha256} is unreadable: {exc}") from exc
    if data.get("sha256") != sha256 or sum(n for _, _, n in segments) != size:
        raise ArtifactError(f"the recipe of {sha256} does not add up")
    for chunk, offset, length in segments:
        chunk_key(chunk)  # a digest, or ArtifactError
        if offset < 0 or length <= 0:
            raise ArtifactError(f"the recipe of {sha256} has a bad segment")
    return _Recipe(sha256, size, segments)


def artifact_is_composite(sha256: str) -> bool:
    """True when the file is stored split (no single object holds its bytes)."""
    artifact_key(sha256)
    return not artifact_storage().exists(artifact_key(sha256)) and _composite_exists(sha256)


def artifact_chunks(sha256: str) -> list[tuple[str, int]]:
    """(chunk sha256, chunk size) of each distinct chunk a split file is made
    of; [] for a plain blob."""
    recipe = _recipe(sha256)
    if recipe is None:
        return []
    storage = artifact_storage()
    return [(chunk, int(storage.size(chunk_key(chunk)))) for chunk in sorted(recipe.chunks)]


def artifact_exists(sha256: str) -> bool:
    storage = artifact_storage()
    if storage.exists(artifact_key(sha256)):
        return True
    recipe = _recipe(sha256)
    return recipe is not None and all(storage.exists(chunk_key(c)) for c in recipe.chunks)


def artifact_size(sha256: str) -> int:
    """The size of the file (plain or split). Raises FileNotFoundError when absent."""
    storage = artifact_storage()
    key = artifact_key(sha256)
    if storage.exists(key):
        return int(storage.size(key))
    recipe = _recipe(sha256)
    if recipe is None:
        raise FileNotFoundError(f"no artifact {sha256}")
    return recipe.size


class _CompositeReader:
    """The bytes of a split file, read (and sought) across its chunks; one chunk
    is open at a time. No ``fileno``: servers stream it rather than sendfile."""

    def __init__(self, recipe: _Recipe) -> None:
        storage = artifact_storage()
        missing = [c for c in sorted(recipe.chunks) if not storage.exists(chunk_key(c))]
        if missing:
            raise FileNotFoundError(f"{recipe.sha256}: {len(missing)} chunk(s) missing, e.g. {missing[0]}")
        self.storage, self.recipe, self.size = storage, recipe, recipe.size
        self.starts: list[int] = []
        total = 0
        for _, _, length in recipe.segments:
            self.starts.append(total)
            total += length
        self.pos = 0
        self.current: tuple[str, IO[bytes]] | None = None
        self.closed = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.pos = base + offset
        return self.pos

    def _chunk(self, sha256: str) -> IO[bytes]:
        if self.current is None or self.current[0] != sha256:
            if self.current is not None:
                self.current[1].close()
            self.current = (sha256, self.storage.open(chunk_key(sha256), "rb"))
        return self.current[1]

    def read(self, size: int = -1) -> bytes:
        if self.closed:
            raise ValueError("read of a closed file")
        want = self.size - self.pos if size is None or size < 0 else min(size, self.size - self.pos)
        parts: list[bytes] = []
        while want > 0:
            index = bisect.bisect_right(self.starts, self.pos) - 1
            chunk, offset, length = self.recipe.segments[index]
            inside = self.pos - self.starts[index]
            n = min(want, length - inside)
            fh = self._chunk(chunk)
            fh.seek(offset + inside)
            data = fh.read(n)
            if len(data) != n:
                raise ArtifactIntegrityError(f"chunk {chunk} of {self.recipe.sha256} is shorter than its recipe says")
            parts.append(data)
            self.pos += n
            want -= n
        return b"".join(parts)

    def close(self) -> None:
        if self.current is not None:
            self.current[1].close()
            self.current = None
        self.closed = True

    def __enter__(self) -> _CompositeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def artifact_open(sha256: str) -> IO[bytes]:
    """The file's bytes, plain or split. Raises FileNotFoundError when absent
    (for a split file: when any of its chunks is)."""
    key = artifact_key(sha256)
    try:
        return artifact_storage().open(key, "rb")
    except (FileNotFoundError, OSError):
        recipe = _recipe(sha256)
        if recipe is None:
            raise
        return _CompositeReader(recipe)  # type: ignore[return-value]


def artifact_local_path(sha256: str) -> Path | None:
    """The blob's path on local disk, when the store is a filesystem and the
    file is stored whole (None for a split file: open it instead)."""
    try:
        path = Path(artifact_storage().path(artifact_key(sha256)))
    except NotImplementedError:
        return None
    return path if path.is_file() else None


def artifact_presigned_url(sha256: str, *, parameters: dict[str, str], expire: int) -> str | None:
    """A presigned URL of the file's object in the bucket; None when the
    storage cannot presign or the file is split (no single object to point
    at: the caller streams it instead)."""
    storage = artifact_storage()
    key = artifact_key(sha256)
    if not hasattr(storage, "bucket") or not storage.exists(key):
        return None
    return str(storage.url(key, parameters=parameters, expire=expire))  # type: ignore[call-arg]


class _RangeReader:
    """A file-like view of ``length`` bytes from ``start`` of an open file
    (``close`` closes that file)."""

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
    """Copy the listed blobs into ``dest`` under their (validated) names (a
    split file is reassembled)."""
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
