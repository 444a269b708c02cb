"""Reads behind the Hub routes: repos, revisions, commit ids, file entries."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from catalog.hub.errors import repo_not_found, revision_not_found
from catalog.models import ModelVersion, RegisteredModel, VersionStatus
from catalog.selectors.visibility import models_visible

# Versions the Hub routes serve: ready ones, and kept-but-below-gate ones by
# exact revision (a pending or failed version has no complete file list).
SERVED_STATUSES = (VersionStatus.READY, VersionStatus.BELOW_GATE)
_COMMIT_ID = re.compile(r"^[0-9a-f]{40}$")
_VERSION = re.compile(r"^v([1-9][0-9]{0,8})$")
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"


def repo_get(*, user: Any, namespace: str, name: str) -> RegisteredModel:
    """The model ``namespace/name`` if ``user`` may see it.

    Raises:
        HubError: RepoNotFound, the same for a missing and an invisible model.
    """
    model = (
        models_visible(user=user)
        .select_related("team", "latest_version")
        .filter(slug=name, team__slug=namespace)
        .first()
    )
    if model is None:
        raise repo_not_found()
    return model


def repo_id(model: RegisteredModel) -> str:
    return f"{model.team.slug}/{model.slug}"


def version_commit_id(version: ModelVersion) -> str:
    """A stable 40-hex commit id per version: the sha1 of what identifies it
    (model, number, and every file's name and sha256)."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"modellibrary:{version.registered_model_id}:{version.version}\n".encode())
    for entry in sorted(version.files, key=lambda f: str(f["name"])):
        digest.update(f"{entry['name']}\0{entry['sha256']}\0{entry['size']}\n".encode())
    return digest.hexdigest()


def empty_commit_id(model: RegisteredModel) -> str:
    """The commit id of a repo that has no version yet."""
    return hashlib.sha1(f"modellibrary:{model.pk}:empty\n".encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Revision:
    """What a revision names: a version, or the empty repo (``main`` before
    the first version)."""

    commit: str
    version: ModelVersion | None

    @property
    def files(self) -> list[dict[str, Any]]:
        return list(self.version.files) if self.version else []


def _served(model: RegisteredModel) -> Any:
    return model.versions.filter(status__in=SERVED_STATUSES)


def revision_resolve(*, model: RegisteredModel, revision: str) -> Revision:
    """``main``, ``v<N>``, an alias name or a version's commit id.

    Raises:
        HubError: RevisionNotFound.
    """
    version: ModelVersion | None = None
    if revision == "main":
        version = model.latest_version
        if version is None:
            version = _served(model).order_by("-version").first()
        if version is None:
            return Revision(commit=empty_commit_id(model), version=None)
    elif match := _VERSION.match(revision):
        version = _served(model).filter(version=int(match.group(1))).first()
    elif _COMMIT_ID.match(revision):
        if revision == empty_commit_id(model) and not _served(model).exists():
            return Revision(commit=revision, version=None)
        version = next((v for v in _served(model) if version_commit_id(v) == revision), None)
    else:
        alias = model.aliases.select_related("version").filter(name=revision).first()
        if alias is not None and alias.version.status in SERVED_STATUSES:
            version = alias.version
    if version is None:
        raise revision_not_found(revision)
    version.registered_model = model  # spare a query when the commit id is computed
    return Revision(commit=version_commit_id(version), version=version)


def revision_file(*, revision: Revision, path: str) -> dict[str, Any] | None:
    return next((f for f in revision.files if f["name"] == path), None)


def lfs_pointer(entry: dict[str, Any]) -> str:
    return LFS_POINTER.format(sha256=entry["sha256"], size=int(entry["size"]))


def git_blob_id(entry: dict[str, Any]) -> str:
    """The git object id of the file's LFS pointer, as the Hub lists for LFS files."""
    pointer = lfs_pointer(entry).encode()
    return hashlib.sha1(b"blob %d\0" % len(pointer) + pointer, usedforsecurity=False).hexdigest()
