"""The JSON bodies of the Hub API, in the shapes ``huggingface_hub`` parses
(``hf_api.py``: ``ModelInfo``, ``RepoFile``, ``RepoSibling``)."""

from __future__ import annotations

from typing import Any

from catalog.hub.selectors import Revision, git_blob_id, lfs_pointer, repo_id
from catalog.models import RegisteredModel, Visibility


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def tree_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A ``/tree`` item: every stored file is an LFS object keyed by its sha256."""
    size = int(entry["size"])
    return {
        "type": "file",
        "oid": git_blob_id(entry),
        "size": size,
        "path": entry["name"],
        "lfs": {"oid": entry["sha256"], "size": size, "pointerSize": len(lfs_pointer(entry).encode())},
    }


def sibling(entry: dict[str, Any]) -> dict[str, Any]:
    size = int(entry["size"])
    return {
        "rfilename": entry["name"],
        "size": size,
        "blobId": git_blob_id(entry),
        "lfs": {"sha256": entry["sha256"], "size": size, "pointerSize": len(lfs_pointer(entry).encode())},
    }


def model_info(model: RegisteredModel, revision: Revision) -> dict[str, Any]:
    version = revision.version
    tags = [f"version:v{version.version}"] if version else []
    if version and version.family:
        tags.append(version.family)
    return {
        "_id": f"modellibrary-{model.pk}",
        "id": repo_id(model),
        "modelId": repo_id(model),
        "author": model.team.slug,
        "sha": revision.commit,
        "lastModified": _iso(version.created_at if version else model.updated_at),
        "createdAt": _iso(model.created_at),
        "private": model.visibility == Visibility.PRIVATE,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": tags,
        "library_name": "transformers" if version and version.framework == "pytorch" else None,
        "siblings": [sibling(f) for f in sorted(revision.files, key=lambda f: str(f["name"]))],
    }
