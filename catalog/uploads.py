"""Upload temporary files that a killed web worker does not leave behind."""

from __future__ import annotations

import fcntl
from typing import Any

from django.core.files.uploadhandler import TemporaryFileUploadHandler


class LockedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Django's temporary-file handler (files in ``FILE_UPLOAD_TEMP_DIR``,
    i.e. ``ARTIFACT_TMP_DIR``), with the file locked while its request lives:
    when the worker is killed mid-upload the kernel drops the lock and
    ``catalog.storage.artifact_tmp_sweep`` removes the partial file."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        fcntl.flock(self.file.fileno(), fcntl.LOCK_EX)
