from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from catalog.storage import (
    ArtifactError,
    ArtifactIntegrityError,
    artifact_key,
    artifact_materialize,
    artifact_open,
    artifact_open_range,
    artifact_put,
    safe_file_name,
)


def test_put_is_content_addressed_and_deduplicated(artifact_store: Path) -> None:
    data = b"safetensors bytes" * 1000
    first = artifact_put(io.BytesIO(data))
    second = artifact_put(io.BytesIO(data))
    assert first == second
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    assert first.size == len(data)
    stored = list(artifact_store.rglob("*"))
    assert [p for p in stored if p.is_file()] == [artifact_store / artifact_key(first.sha256)]
    with artifact_open(first.sha256) as fh:
        assert fh.read() == data


def test_a_hash_mismatch_stores_nothing(artifact_store: Path, settings: object) -> None:
    with pytest.raises(ArtifactIntegrityError):
        artifact_put(io.BytesIO(b"tampered"), expected_sha256="0" * 64)
    assert not artifact_store.exists() or not any(p.is_file() for p in artifact_store.rglob("*"))
    assert not any(Path(settings.ARTIFACT_TMP_DIR).iterdir())  # type: ignore[attr-defined]


def test_keys_come_from_digests_only() -> None:
    with pytest.raises(ArtifactError):
        artifact_key("../../etc/passwd")
    with pytest.raises(ArtifactError):
        artifact_key("A" * 64)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "", ".hidden", "x" * 300])
def test_unsafe_file_names_are_refused(name: str) -> None:
    with pytest.raises(ArtifactError):
        safe_file_name(name)


def test_range_reads_and_materialize(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10
    blob = artifact_put(io.BytesIO(data))
    with artifact_open_range(blob.sha256, 100, 50) as piece:
        assert piece.read(30) + piece.read(30) + piece.read() == data[100:150]
    out = artifact_materialize([{"name": "model.safetensors", "sha256": blob.sha256}], tmp_path / "m")
    assert (out / "model.safetensors").read_bytes() == data
