"""Uploading labelled datasets: validate first, store nothing on failure."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import IO, Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction

from catalog.models import Dataset, DatasetVersion, Domain, Team
from catalog.storage import artifact_put
from runners.datasets import DatasetInvalid, Issue, LabelledText, Limits, parse_labelled_text

R = TypeVar("R")


def dataset_limits() -> Limits:
    return Limits(
        max_bytes=settings.DATASET_MAX_BYTES,
        max_rows=settings.DATASET_MAX_ROWS,
        max_text_chars=settings.DATASET_MAX_TEXT_CHARS,
        max_labels=settings.DATASET_MAX_LABELS,
    )


def _read_bounded(source: IO[bytes], limit: int) -> bytes:
    """Read at most ``limit`` + 1 bytes, so an oversized upload fails fast."""
    data = source.read(limit + 1)
    if len(data) > limit:
        raise DatasetInvalid([Issue(f"the file is over the size limit of {limit:,} bytes")])
    return data


def dataset_upload(
    *,
    team: Team,
    source: IO[bytes],
    file_name: str,
    name: str = "",
    text_column: str = "text",
    label_column: str = "label",
    domain: Domain | None = None,
    description: str = "",
) -> tuple[DatasetVersion, bool]:
    """Validate an uploaded CSV/JSONL file and register it as a dataset version.

    Returns the version and whether it was created (the same bytes uploaded
    again to the same dataset reuse the existing version).

    Raises:
        DatasetInvalid: every issue found; no row and no file is stored then.
    """
    return dataset_upload_then(
        team=team,
        source=source,
        file_name=file_name,
        name=name,
        text_column=text_column,
        label_column=label_column,
        domain=domain,
        description=description,
        then=lambda version, created: (version, created),
    )


def dataset_upload_then(
    *,
    team: Team,
    source: IO[bytes],
    file_name: str,
    then: Callable[[DatasetVersion, bool], R],
    name: str = "",
    text_column: str = "text",
    label_column: str = "label",
    domain: Domain | None = None,
    description: str = "",
) -> R:
    """Upload a dataset and use it (``then(version, created)``) in one transaction.

    The file is validated first; the rows are written and ``then`` runs inside
    one transaction, and the blob is stored last, before the commit. If ``then``
    raises (a fine-tune request refused, say), its exception propagates and
    nothing at all is stored: no dataset row, no version row, no file.

    Raises:
        DatasetInvalid: every issue found in the file.
    """
    limits = dataset_limits()
    data = _read_bounded(source, limits.max_bytes)
    parsed = parse_labelled_text(
        data,
        file_name=file_name,
        text_column=text_column or "text",
        label_column=label_column or "label",
        limits=limits,
    )
    sha256 = hashlib.sha256(data).hexdigest()
    dataset_name = (name or file_name.rsplit("/", 1)[-1].rsplit(".", 1)[0] or "dataset")[:200]
    with transaction.atomic():
        version, created = _version_get_or_create(
            team=team,
            dataset_name=dataset_name,
            sha256=sha256,
            domain=domain,
            description=description,
            fields=_version_fields(parsed, data, file_name, text_column, label_column),
        )
        result = then(version, created)
        if created:
            # Content-addressed, so storing it last is safe; a failure here
            # rolls the rows back too.
            artifact_put(io.BytesIO(data), expected_sha256=sha256)
    return result


def _version_get_or_create(
    *, team: Team, dataset_name: str, sha256: str, domain: Domain | None, description: str, fields: dict[str, Any]
) -> tuple[DatasetVersion, bool]:
    try:
        with transaction.atomic():  # a savepoint: a lost race leaves the outer transaction usable
            dataset, created_dataset = Dataset.objects.get_or_create(
                team=team, name=dataset_name, defaults={"domain": domain, "description": description}
            )
            if not created_dataset and domain is not None and dataset.domain_id != domain.pk:
                # The uploader says what the data is about now; the newest answer wins.
                Dataset.objects.filter(pk=dataset.pk).update(domain=domain)
                dataset.domain = domain
            return DatasetVersion.objects.get_or_create(dataset=dataset, sha256=sha256, defaults=fields)
    except IntegrityError:  # a concurrent upload of the same bytes won
        return DatasetVersion.objects.get(dataset__team=team, dataset__name=dataset_name, sha256=sha256), False


def _version_fields(
    parsed: LabelledText, data: bytes, file_name: str, text_column: str, label_column: str
) -> dict[str, Any]:
    return {
        "size": len(data),
        "file_name": file_name.rsplit("/", 1)[-1][:255],
        "format": parsed.format,
        "rows": len(parsed.texts),
        "text_column": text_column,
        "label_column": label_column,
        "label_counts": parsed.label_counts,
        "schema": {"columns": parsed.columns, "text": text_column, "label": label_column},
        "report": {
            "duplicates_dropped": len(parsed.duplicates),
            "duplicate_rows": parsed.duplicates[:50],
            "rows_in_file": len(parsed.texts) + len(parsed.duplicates),
        },
    }


def dataset_load(*, version: DatasetVersion) -> LabelledText:
    """Read a stored dataset version back (it validated when it was uploaded)."""
    from catalog.storage import artifact_open

    with artifact_open(version.sha256) as fh:
        data = fh.read()
    return parse_labelled_text(
        data,
        file_name=version.file_name or f"data.{version.format}",
        text_column=version.text_column,
        label_column=version.label_column,
        limits=Limits(max_bytes=max(len(data), 1), max_rows=10**9, max_text_chars=10**9, max_labels=10**9),
    )
