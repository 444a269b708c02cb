"""Receiving a folder's files from a multipart request straight into the
artifact store: each file is hashed while Django's parser writes it to a
temporary file beside the store, then moved into place (a rename on the
filesystem store) — one pass over the bytes, never a whole file in memory.

Use ``use_hashing_upload_handler(request)`` before the request's body is
read (for a CSRF-protected view: ``csrf_exempt`` outside, ``csrf_protect``
inside, as Django's docs describe for changing upload handlers).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest

from catalog.storage import artifact_key, artifact_storage

# Big reads: Django's multipart parser scans each chunk for the boundary in
# Python, so fewer, larger chunks cost far less CPU than its 64 KiB default.
CHUNK = 4 * 1024 * 1024


class HashedUploadedFile(UploadedFile):
    """A received file on local disk with its sha256 and size already known."""

    def __init__(self, file: Any, name: str, size: int, sha256: str) -> None:
        super().__init__(file, name, "application/octet-stream", size, None)
        self.sha256 = sha256
        self.path = str(file.name)

    def temporary_file_path(self) -> str:
        return self.path

    def close(self) -> None:
        try:
            if self.file is not None:
                self.file.close()
        finally:
            if os.path.exists(self.path):  # not moved into the store: discard
                os.unlink(self.path)


class HashingUploadHandler(FileUploadHandler):
    chunk_size = CHUNK

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.digest = hashlib.sha256()
        self.size = 0
        # Closed (and removed unless moved into the store) by HashedUploadedFile.close or upload_interrupted.
        self.tmp = tempfile.NamedTemporaryFile(dir=settings.ARTIFACT_TMP_DIR, prefix="upload-", delete=False)  # noqa: SIM115

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.digest.update(raw_data)
        self.size += len(raw_data)
        self.tmp.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> HashedUploadedFile:
        self.tmp.flush()
        self.tmp.seek(0)
        return HashedUploadedFile(self.tmp, self.file_name or "", self.size, self.digest.hexdigest())

    def upload_interrupted(self) -> None:
        tmp = getattr(self, "tmp", None)
        if tmp is not None:
            tmp.close()
            if os.path.exists(tmp.name):
                os.unlink(tmp.name)


def use_hashing_upload_handler(request: HttpRequest) -> None:
    request.upload_handlers = [HashingUploadHandler(request)]


def upload_store(upload: Any) -> str:
    """Move a received file into the content-addressed store; its sha256.

    A ``HashedUploadedFile`` is moved (already hashed on arrival); any other
    uploaded file goes through ``artifact_put`` (hashed while copied)."""
    from catalog.storage import artifact_put

    if not isinstance(upload, HashedUploadedFile):
        return artifact_put(upload).sha256
    key = artifact_key(upload.sha256)
    storage = artifact_storage()
    try:
        if not storage.exists(key):
            stored = storage.save(key, upload)
            if stored != key:  # pragma: no cover - another writer raced us to a new name
                storage.delete(stored)
    finally:
        upload.close()
    return upload.sha256
