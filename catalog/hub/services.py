"""Writes behind the Hub routes: LFS uploads into the artifact store, commits
into new versions, ``create_repo`` into a registered model.

Registration rules (what a folder must hold, who may register, what is read
from it) live in ``catalog.services.registration``; this module only turns
the Hub protocol into calls of that service.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from django.conf import settings
from django.core import signing

from catalog.hub.errors import HubError
from catalog.hub.selectors import Revision
from catalog.intake.names import is_pickle, name_problem
from catalog.models import ModelVersion, RegisteredModel, Team
from catalog.roles import Role, has_role
from catalog.storage import (
    StoredArtifact,
    artifact_exists,
    artifact_put,
    artifact_size,
)
from catalog.uploads import UploadError, body_store

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HIDDEN = re.compile(r"^\.[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")
_REPO_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
LFS_UPLOAD_SALT = "catalog.hub.lfs-upload"
LFS_UPLOAD_MAX_AGE_S = 24 * 3600
# Small text files travel inline in the commit (base64 in one NDJSON line);
# everything else goes through LFS, streamed to the store.
REGULAR_MAX_BYTES = 1024 * 1024
COMMIT_LINE_MAX_BYTES = 4 * REGULAR_MAX_BYTES


def write_require(*, user: Any, team: Team) -> None:
    """Writes need the member role in the repo's team.

    Raises:
        HubError: 401 for an anonymous caller, 403 for a viewer or outsider.
    """
    if user is None or not user.is_authenticated:
        raise HubError(401, "Authentication required: set HF_TOKEN to one of your API tokens.")
    if not has_role(user, team, Role.MEMBER):
        raise HubError(403, f"To upload you must be a member of the team {team.name}.")


def max_file_bytes() -> int:
    return int(getattr(settings, "MODEL_MAX_BYTES", 8 * 1024**3))


def path_check(path: str) -> str:
    """A file name of a version: the registration rules (one flat, safe name;
    never a pickle), checked before any byte is uploaded.

    Raises:
        HubError: 400 with the reason.
    """
    if is_pickle(path):
        raise HubError(
            400,
            f"{path} is a pickle file, which can run code when loaded; only safetensors weights are accepted "
            "(save with save_pretrained(..., safe_serialization=True)).",
        )
    problem = name_problem(path)
    if problem:
        raise HubError(400, f"Unsupported file name: {problem}.")
    return path


def card_front_matter_problem(content: str) -> str | None:
    """Why a README's YAML front matter cannot be read, or None."""
    import yaml

    if not content.startswith("---"):
        return None
    lines = content.splitlines()
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        return "The YAML front matter has no closing '---' line."
    try:
        meta = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        return f"The YAML front matter is not valid YAML: {exc}"
    if meta is not None and not isinstance(meta, dict):
        return "The YAML front matter must be a mapping (key: value lines)."
    return None


# --- preupload ----------------------------------------------------------------


def _is_text(sample: bytes) -> bool:
    if b"\0" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the 512-byte sample is still text.
        return exc.start >= len(sample) - 3
    return True


def preupload_modes(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``uploadMode`` per file: ``regular`` for small text, ``lfs`` otherwise."""
    answer = []
    for item in files:
        path = str(item.get("path", ""))
        if _HIDDEN.match(path) and ".." not in path:
            # .gitattributes, .gitignore, … : not part of a model folder (the
            # push CLI skips them too); the client then neither sends nor commits them.
            answer.append({"path": path, "uploadMode": "regular", "shouldIgnore": True})
            continue
        path_check(path)
        size = int(item.get("size") or 0)
        if size > max_file_bytes():
            raise HubError(413, f"{path} is {size} bytes; the limit per file is {max_file_bytes()} bytes.")
        try:
            sample = base64.b64decode(str(item.get("sample", "")))
        except (binascii.Error, ValueError):
            sample = b"\0"
        regular = size <= REGULAR_MAX_BYTES and _is_text(sample) and not path.endswith(".safetensors")
        answer.append({"path": path, "uploadMode": "regular" if regular else "lfs", "shouldIgnore": False})
    return answer


# --- LFS batch and basic transfer -----------------------------------------------


def lfs_batch_objects(
    *, user: Any, model: RegisteredModel, objects: list[dict[str, Any]], upload_href: Callable[[str], str]
) -> list[dict[str, Any]]:
    """The batch answer per object: no ``actions`` when the store holds it
    already (the client skips it), an ``upload`` action to a signed URL
    (``upload_href(token)``) otherwise, an ``error`` for a bad object.

    The client PUTs to that URL without its Authorization header, so the URL
    itself carries the grant: model, user, sha256 and size, signed and dated.
    """
    answer: list[dict[str, Any]] = []
    for obj in objects:
        oid, size = str(obj.get("oid", "")), obj.get("size")
        if not _SHA256.match(oid) or not isinstance(size, int) or size < 0:
            answer.append(
                {"oid": oid, "size": 0, "error": {"code": 422, "message": "oid must be a sha256 and size an integer."}}
            )
            continue
        if size > max_file_bytes():
            message = f"{size} bytes is over the limit of {max_file_bytes()} bytes per file."
            answer.append({"oid": oid, "size": size, "error": {"code": 413, "message": message}})
            continue
        if artifact_exists(oid):
            answer.append({"oid": oid, "size": size})
            continue
        token = signing.dumps({"m": model.pk, "u": user.pk, "o": oid, "s": size}, salt=LFS_UPLOAD_SALT)
        answer.append(
            {"oid": oid, "size": size, "authenticated": True, "actions": {"upload": {"href": upload_href(token)}}}
        )
    return answer


@dataclass(frozen=True)
class UploadGrant:
    model_id: int
    user_id: int
    oid: str
    size: int


def lfs_upload_grant(token: str) -> UploadGrant:
    """What a signed upload URL allows.

    Raises:
        HubError: 403 for a forged or expired token.
    """
    try:
        data = signing.loads(token, salt=LFS_UPLOAD_SALT, max_age=LFS_UPLOAD_MAX_AGE_S)
    except signing.BadSignature:
        raise HubError(403, "This upload URL is invalid or has expired; start the upload again.") from None
    return UploadGrant(model_id=int(data["m"]), user_id=int(data["u"]), oid=str(data["o"]), size=int(data["s"]))


def lfs_upload_receive(*, grant: UploadGrant, request: Any) -> StoredArtifact:
    """Stream the PUT body into the store (``catalog.uploads.body_store``:
    hashed while written to a temporary file, one pass, never whole in
    memory); it becomes visible only if its sha256 and size are the granted ones.

    Raises:
        HubError: 400 when the bytes are not the announced object, 411
            without a Content-Length.
    """
    try:
        return body_store(request, size=grant.size, expected_sha256=grant.oid)
    except UploadError as exc:
        raise HubError(exc.status, exc.message) from None


# --- commit -------------------------------------------------------------------------


@dataclass
class CommitPlan:
    summary: str = ""
    description: str = ""
    parent_commit: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    named: set[str] = field(default_factory=set)  # blobs this commit stored or named

    @property
    def message(self) -> str:
        return "\n\n".join(p for p in (self.summary.strip(), self.description.strip()) if p)


def commit_lines(stream: IO[bytes] | Any) -> Iterable[dict[str, Any]]:
    """The NDJSON items of a commit body, read line by line.

    Raises:
        HubError: 400 for a malformed line, 413 for a line over the limit.
    """
    while line := stream.readline(COMMIT_LINE_MAX_BYTES + 1):
        if len(line) > COMMIT_LINE_MAX_BYTES:
            raise HubError(413, "A commit line is too long: large files must go through LFS.")
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise HubError(400, "The commit body is not NDJSON.") from None
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise HubError(400, "Every commit line is an object with 'key' and 'value'.")
        yield item


def _stored_size(sha256: str) -> int:
    return artifact_size(sha256)  # a plain blob or a split file (catalog/storage.py)


def commit_plan(*, plan: CommitPlan, items: Iterable[dict[str, Any]]) -> CommitPlan:
    """Apply the commit's operations to ``plan`` (the parent's file list; git
    semantics: files not named stay as they were). Inline files are stored here."""
    for item in items:
        key, value = item.get("key"), item["value"]
        if key == "header":
            plan.summary = str(value.get("summary") or "")
            plan.description = str(value.get("description") or "")
            plan.parent_commit = value.get("parentCommit")
        elif key == "file":
            path = path_check(str(value.get("path", "")))
            if value.get("encoding", "base64") != "base64":
                raise HubError(400, f"{path}: only base64 inline content is supported.")
            try:
                content = base64.b64decode(str(value.get("content", "")), validate=True)
            except (binascii.Error, ValueError):
                raise HubError(400, f"{path}: the content is not valid base64.") from None
            plan.files[path] = artifact_put(io.BytesIO(content)).sha256
            plan.named.add(plan.files[path])
        elif key == "lfsFile":
            path = path_check(str(value.get("path", "")))
            oid = str(value.get("oid", ""))
            if value.get("algo", "sha256") != "sha256" or not _SHA256.match(oid) or not artifact_exists(oid):
                raise HubError(400, f"{path}: its LFS object {oid} was not uploaded.")
            if value.get("size") is not None and int(value["size"]) != _stored_size(oid):
                raise HubError(400, f"{path}: the size does not match the uploaded object.")
            plan.files[path] = oid
            plan.named.add(oid)
        elif key == "deletedFile":
            plan.files.pop(str(value.get("path", "")), None)
        elif key == "deletedFolder":
            folder = str(value.get("path", "")).strip("/")
            plan.files = {n: s for n, s in plan.files.items() if folder and not n.startswith(f"{folder}/")}
        else:
            raise HubError(400, f"Unsupported commit operation {key!r}.")
    return plan


def commit_apply(
    *, user: Any, model: RegisteredModel, parent: Revision, items: Iterable[dict[str, Any]]
) -> ModelVersion | None:
    """A new immutable version from the commit, or None when the commit
    changes nothing (the parent version stays the head).

    Raises:
        HubError: 400/409/412 with the reason; the registration service's
            refusals (pickles, missing weights, …) come back as 400.
    """
    from catalog.services.registration import blobs_discard_unreferenced, version_register

    write_require(user=user, team=model.team)
    before = {str(f["name"]): str(f["sha256"]) for f in parent.files}
    plan = CommitPlan(files=dict(before))
    try:
        commit_plan(plan=plan, items=items)
        if plan.parent_commit and plan.parent_commit != parent.commit:
            raise HubError(412, f"The parent commit {plan.parent_commit} is not the head of main ({parent.commit}).")
        if not plan.files:
            raise HubError(400, "The commit leaves no files: a version needs its weights.")
    except HubError:
        # A refused commit stores nothing: the blobs it brought go, unless
        # something else uses them (the registration service does the same).
        blobs_discard_unreferenced(plan.named - set(before.values()))
        raise
    if parent.version is not None and plan.files == before:
        return None
    return version_register(user=user, registered_model=model, files=plan.files, message=plan.message)


# --- create_repo ----------------------------------------------------------------------


def repo_create(
    *, user: Any, namespace: str, name: str, visibility: str, repo_url: Callable[[RegisteredModel], str]
) -> RegisteredModel:
    """Register an empty model ``namespace/name`` in the team ``namespace``.

    Raises:
        HubError: 400 for a bad name, 401/403 for a caller who may not
            register in the team, 404 for an unknown team, 409 when the name
            is taken.
    """
    from catalog.services.registration import model_register

    if not _REPO_NAME.match(name) or len(name) > 96:
        raise HubError(400, f"Invalid repo name {name!r}: use lowercase letters, digits and single hyphens.")
    team = Team.objects.filter(slug=namespace).first()
    if user is None or not user.is_authenticated:
        raise HubError(401, "Authentication required: set HF_TOKEN to one of your API tokens.")
    if team is None or not has_role(user, team, Role.VIEWER):
        raise HubError(404, f"No team {namespace!r} of yours: a repo id is <team-slug>/<model-name>.")
    write_require(user=user, team=team)
    existing = RegisteredModel.objects.filter(slug=name).first()
    if existing is not None and existing.team_id == team.pk:
        # exist_ok=True swallows the 409 and reads "url" from its body.
        raise HubError(409, "You already created this model repo", extra={"url": repo_url(existing)})
    if existing is not None:
        raise HubError(409, f"The model name {name!r} is taken in another team; choose another.")
    return model_register(user=user, team=team, name=name, visibility=visibility)
