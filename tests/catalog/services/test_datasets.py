from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from catalog.models import Dataset, DatasetVersion
from catalog.services.datasets import dataset_upload
from runners.datasets import DatasetInvalid

pytestmark = pytest.mark.django_db


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_upload_is_content_addressed_and_reused(make_team: Any, tickets_csv: bytes, artifact_store: Path) -> None:
    team = make_team("Team A")
    first, created = dataset_upload(team=team, source=io.BytesIO(tickets_csv), file_name="tickets.csv")
    assert created
    assert first.rows == 120
    assert first.labels == ["account", "billing", "shipping", "technical"]
    assert sum(first.label_counts.values()) == 120
    again, created_again = dataset_upload(team=team, source=io.BytesIO(tickets_csv), file_name="tickets.csv")
    assert (again.pk, created_again) == (first.pk, False)
    assert len(stored_files(artifact_store)) == 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"text,label\n",
        b"words,label\nx,y\n",
        b"text,label\n\xff\xfe,a\n",
        b"text,label\nhi,a\nho,a\n",
        b"text,label\nhi,a\nho,b\nhu,b\n",
        b"text,label\nhi,a\nho,a\nh\x00u,b\nhe,b\n",
        b'{"text": "hi", "label": "a"}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n",
    ],
)
def test_a_bad_upload_stores_nothing(make_team: Any, data: bytes, artifact_store: Path, settings: Any) -> None:
    with pytest.raises(DatasetInvalid):
        dataset_upload(team=make_team("Team A"), source=io.BytesIO(data), file_name="bad.csv")
    assert Dataset.objects.count() == 0
    assert DatasetVersion.objects.count() == 0
    assert stored_files(artifact_store) == []
    assert list(Path(settings.ARTIFACT_TMP_DIR).iterdir()) == []


def test_an_oversized_upload_is_refused_before_parsing(make_team: Any, settings: Any) -> None:
    settings.DATASET_MAX_BYTES = 100
    with pytest.raises(DatasetInvalid, match="over the size limit of 100 bytes"):
        dataset_upload(
            team=make_team("Team A"), source=io.BytesIO(b"text,label\n" + b"x,a\n" * 50), file_name="big.csv"
        )
    assert DatasetVersion.objects.count() == 0


def test_the_label_cap_comes_from_the_settings(make_team: Any, settings: Any, artifact_store: Path) -> None:
    data = b"text,label\n" + b"".join(b"t%d,l%d\nu%d,l%d\n" % (i, i, i, i) for i in range(4))
    settings.DATASET_MAX_LABELS = 3
    with pytest.raises(DatasetInvalid, match="4 distinct labels; the limit is 3"):
        dataset_upload(team=make_team("Team A"), source=io.BytesIO(data), file_name="many.csv")
    assert stored_files(artifact_store) == []
    settings.DATASET_MAX_LABELS = 4
    version, _ = dataset_upload(team=make_team("Team A"), source=io.BytesIO(data), file_name="many.csv")
    assert len(version.labels) == 4
