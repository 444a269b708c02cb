"""Registering a team's own models: the one service under every way in
(web page, REST API, ``push`` CLI, the Hugging Face Hub endpoint).

Stable interface (other modules call these; keep the signatures)::

    model_register(*, user, team, name, visibility, summary="", card="",
                   modality=None, result=None, domain=None) -> RegisteredModel
    version_register(*, user, registered_model, files: dict[str, str],
                     message: str = "") -> ModelVersion
    intake_inspect(files: dict[str, str]) -> Proposal      # re-exported

``files`` maps a file name inside the folder (flat: no sub-folders) to the
sha256 of a blob ALREADY in the content-addressed artifact store
(``catalog.storage.artifact_put``). ``modality``/``result``/``domain`` are
taxonomy nodes or their slug paths (``"text/natural-language"``).

Errors: ``django.core.exceptions.PermissionDenied`` (the user lacks the team
role: member to register, maintainer to promote, deprecate or edit) and
``ValidationError`` (``IntakeRefused`` for a folder that cannot be stored:
unsafe names, pickle weights, no safetensors, a missing blob…). When a folder
is refused, the blobs it named that nothing else references are deleted from
the store ("nothing stored"); a blob that an existing version, variant or
dataset uses is kept.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils.text import slugify

from catalog.intake.inspect import IntakeRefused, Proposal, intake_inspect
from catalog.models import (
    Alias,
    AuditAction,
    DatasetVersion,
    Domain,
    Lifecycle,
    Modality,
    ModelVersion,
    RegisteredModel,
    ResultKind,
    TaxonomyNode,
    Team,
    Variant,
    VariantStatus,
    VersionStatus,
    Visibility,
)
from catalog.roles import Role, role_require
from catalog.services.audit import audit_record
from catalog.services.registry import model_version_create, model_version_finish, registered_model_refresh
from catalog.storage import artifact_key, artifact_storage

__all__ = [
    "IntakeRefused",
    "Proposal",
    "alias_remove",
    "alias_set_checked",
    "blobs_discard_unreferenced",
    "intake_inspect",
    "lifecycle_set",
    "model_card_update",
    "model_register",
    "version_register",
]

log = logging.getLogger(__name__)

ALIASES = ("production", "staging")
# Nodes a model gets until its first version proposes better ones (only
# when the caller named none).
FALLBACK_NODES = {"modality": "text", "result": "classification", "domain": "general"}


def _node(model: type[TaxonomyNode], value: Any, field: str) -> Any:
    if value is None or isinstance(value, model):
        return value
    node = model._default_manager.filter(path=str(value).strip("/")).first()
    if node is None:
        raise ValidationError({field: f"No {field} node has the path {value!r}."})
    return node


def _fallback(model: type[TaxonomyNode], field: str) -> Any:
    node = model._default_manager.filter(path=FALLBACK_NODES[field]).first()
    node = node or model._default_manager.order_by("depth", "path").first()
    if node is None:
        raise ValidationError({field: f"The {field} tree is empty; load the taxonomy first."})
    return node


@transaction.atomic
def model_register(
    *,
    user: Any,
    team: Team,
    name: str,
    visibility: str,
    summary: str = "",
    card: str = "",
    modality: Modality | str | None = None,
    result: ResultKind | str | None = None,
    domain: Domain | str | None = None,
) -> RegisteredModel:
    """Create an empty registered model in ``team`` (member role required).

    Trees not given get a placeholder that the first version's proposal
    replaces (``domain`` defaults to ``general``).

    Raises:
        PermissionDenied: ``user`` is not a member (or maintainer) of ``team``.
        ValidationError: a bad name, visibility or tree path; the slug exists
            (``code="exists"`` on the ``name`` error).
    """
    role_require(user, team, Role.MEMBER, "register a model")
    name = (name or "").strip()
    errors: dict[str, str] = {}
    if not name or len(name) > 200:
        errors["name"] = "Give the model a name of 1 to 200 characters."
    if visibility not in Visibility.values:
        errors["visibility"] = f"Visibility must be one of {', '.join(Visibility.values)}."
    if len(summary) > 300:
        errors["summary"] = "A summary has at most 300 characters."
    if errors:
        raise ValidationError(errors)
    slug = slugify(name)[:120].strip("-")
    if not slug:
        raise ValidationError({"name": "The name must contain letters or digits."})
    if RegisteredModel.objects.filter(slug=slug).exists():
        raise ValidationError(
            {"name": ValidationError(f"A model with the slug {slug!r} already exists.", code="exists")}
        )
    nodes = {
        "modality": _node(Modality, modality, "modality"),
        "result": _node(ResultKind, result, "result"),
        "domain": _node(Domain, domain, "domain"),
    }
    proposed = sorted(k for k in ("modality", "result") if nodes[k] is None)
    model = RegisteredModel.objects.create(
        slug=slug,
        name=name,
        team=team,
        visibility=visibility,
        summary=summary.strip(),
        modality=nodes["modality"] or _fallback(Modality, "modality"),
        result_kind=nodes["result"] or _fallback(ResultKind, "result"),
        domain=nodes["domain"] or _fallback(Domain, "domain"),
        created_by=user if getattr(user, "is_authenticated", False) else None,
        # Trees left to the first version's proposal.
        card_metadata={"_proposed_trees": proposed} if proposed else {},
    )
    if card:
        _card_apply(model, card)
    registered_model_refresh(model=model)
    audit_record(
        actor=user,
        action=AuditAction.MODEL_REGISTERED,
        registered_model=model,
        subject=model.slug,
        detail={"visibility": visibility, "team": team.slug},
    )
    return model


def _card_apply(model: RegisteredModel, text: str, *, from_readme: bool = False) -> None:
    """Store a card; front matter (licence, tags, datasets, language) becomes fields."""
    from catalog.intake.card import MAX_CARD_CHARS, card_metadata, card_split

    if len(text) > MAX_CARD_CHARS:
        raise ValidationError({"card": f"A card has at most {MAX_CARD_CHARS} characters."})
    meta, body = card_split(text)
    fields = card_metadata(meta)
    kept = {k: v for k, v in model.card_metadata.items() if k.startswith("_")}
    model.card = body if meta else text
    model.license = fields.pop("license", "")
    model.tags = fields.pop("tags", [])
    model.card_metadata = {**kept, **fields}
    model.save(update_fields=["card", "license", "tags", "card_metadata", "updated_at"])


@transaction.atomic
def model_card_update(*, user: Any, registered_model: RegisteredModel, card: str) -> RegisteredModel:
    """Replace the card (Markdown, optional YAML front matter); maintainers only."""
    role_require(user, registered_model.team, Role.MAINTAINER, "edit the card")
    _card_apply(registered_model, card)
    registered_model_refresh(model=registered_model)
    audit_record(
        actor=user,
        action=AuditAction.CARD_EDITED,
        registered_model=registered_model,
        subject=registered_model.slug,
        detail={"characters": len(card)},
    )
    return registered_model


def blobs_discard_unreferenced(shas: list[str] | set[str]) -> list[str]:
    """Delete the given blobs that no version, variant or dataset references;
    returns the deleted digests.

    A concurrent upload that put the same bytes a moment ago and has not yet
    registered them loses its blob and has to upload it again (its
    registration fails with "no blob … upload it first", never silently).
    """
    deleted = []
    storage = artifact_storage()
    for sha in sorted(set(shas)):
        try:
            key = artifact_key(sha)
        except Exception:  # noqa: BLE001 - not a digest: nothing was stored under it
            continue
        used = (
            ModelVersion.objects.filter(Q(weights_sha256=sha) | Q(files__icontains=sha)).exists()
            or Variant.objects.filter(sha256=sha).exists()
            or DatasetVersion.objects.filter(sha256=sha).exists()
        )
        if not used and storage.exists(key):
            storage.delete(key)
            deleted.append(sha)
    return deleted


def _schemas(p: Proposal) -> tuple[dict[str, Any], dict[str, Any]]:
    if p.family == "mlp-classifier":
        input_schema: dict[str, Any] = {"type": "features"}
    elif p.model_type or p.family in ("sentence-encoder", "text-classifier", "sequence-classifier"):
        input_schema = {"type": "text", "max_tokens": p.max_length or 512}
    else:
        input_schema = {}
    if p.family == "sentence-encoder":
        output_schema: dict[str, Any] = {"type": "embedding", "dim": p.hidden_size}
    elif p.labels:
        output_schema = {"type": "probabilities", "labels": p.labels}
    else:
        output_schema = {}
    return input_schema, output_schema


def _apply_proposed_trees(model: RegisteredModel, p: Proposal) -> None:
    pending = model.card_metadata.get("_proposed_trees") or []
    if not pending:
        return
    if "modality" in pending and p.modality:
        node = Modality.objects.filter(path=p.modality).first()
        model.modality = node or model.modality
    if "result" in pending and p.result:
        node_r = ResultKind.objects.filter(path=p.result).first()
        model.result_kind = node_r or model.result_kind
    model.card_metadata = {k: v for k, v in model.card_metadata.items() if k != "_proposed_trees"}
    model.save(update_fields=["modality", "result_kind", "card_metadata", "updated_at"])


def _skip_compile(version: ModelVersion, reason: str) -> None:
    """Record why a version has no compiled variants (it stays downloadable)."""
    from runners.compile import SPECS

    for spec in SPECS:
        Variant.objects.update_or_create(
            version=version,
            name=spec.name,
            hardware=spec.hardware,
            defaults={
                "format": spec.format,
                "precision": spec.precision,
                "runtime": spec.runtime,
                "status": VariantStatus.SKIPPED,
                "status_reason": reason,
            },
        )


def version_register(
    *, user: Any, registered_model: RegisteredModel, files: dict[str, str], message: str = ""
) -> ModelVersion:
    """Register a new immutable version from blobs already in the artifact store.

    Reads the folder (``intake_inspect``), creates the version (ready: a
    registered model has no quality gate to pass), takes the card from
    ``README.md`` when there is one, and queues the compile — or records it
    as ``skipped`` with the reason when the architecture cannot be compiled.

    Raises:
        PermissionDenied: ``user`` is not a member of the model's team.
        IntakeRefused: the folder cannot be stored (blobs named only by this
            request are deleted then).
        ValidationError: the model is archived.
    """
    role_require(user, registered_model.team, Role.MEMBER, "register a version")
    if registered_model.lifecycle == Lifecycle.ARCHIVED:
        raise ValidationError({"model": f"{registered_model.slug} is archived and takes no new versions."})
    try:
        proposal = intake_inspect(files)
    except IntakeRefused:
        if all(isinstance(s, str) for s in files.values()):
            deleted = blobs_discard_unreferenced(set(files.values()))
            if deleted:
                log.info("refused folder for %s: deleted %d unreferenced blobs", registered_model.slug, len(deleted))
        raise
    input_schema, output_schema = _schemas(proposal)
    with transaction.atomic():
        version = model_version_create(
            registered_model=registered_model,
            family=proposal.family,
            files=proposal.files,
            weights_name=proposal.weights_name,
            framework="pytorch" if proposal.model_type or proposal.family != "transformers" else "safetensors",
            parameter_count=proposal.parameter_count or None,
            input_schema=input_schema,
            output_schema=output_schema,
            labels=proposal.labels,
            description=message.strip(),
            code_version="registered",
        )
        version.intake = proposal.intake()
        version.created_by = user if getattr(user, "is_authenticated", False) else None
        version.save(update_fields=["intake", "created_by"])
        model = RegisteredModel.objects.select_for_update().get(pk=registered_model.pk)
        _apply_proposed_trees(model, proposal)
        if "README.md" in files:
            readme = proposal.card
            meta = dict(proposal.card_metadata)
            model.card = readme
            model.license = str(meta.pop("license", ""))
            model.tags = list(meta.pop("tags", []))
            kept = {k: v for k, v in model.card_metadata.items() if k.startswith("_")}
            model.card_metadata = {**kept, **meta}
            model.save(update_fields=["card", "license", "tags", "card_metadata", "updated_at"])
        version = model_version_finish(version=version, status=VersionStatus.READY)
        audit_record(
            actor=user,
            action=AuditAction.VERSION_REGISTERED,
            version=version,
            subject=str(version),
            detail={
                "family": proposal.family,
                "files": len(proposal.files),
                "bytes": proposal.total_size,
                "message": message[:200],
            },
        )
        if proposal.compilable:
            if settings.COMPILE_ON_READY:
                from catalog.services.compile import compile_request

                compile_request(version=version)
        else:
            _skip_compile(version, proposal.compile_reason)
    registered_model.refresh_from_db()
    return version


# --- promotion and lifecycle ---------------------------------------------------------


@transaction.atomic
def alias_set_checked(*, user: Any, registered_model: RegisteredModel, name: str, version: ModelVersion) -> Alias:
    """Point ``production`` or ``staging`` at ``version`` (maintainers only).

    Raises:
        PermissionDenied: not a maintainer of the model's team.
        ValidationError: unknown alias; the version belongs to another model,
            is not ready (below the quality gate, failed, pending) or is not active.
    """
    role_require(user, registered_model.team, Role.MAINTAINER, f"promote a version to {name}")
    if name not in ALIASES:
        raise ValidationError({"alias": f"The alias must be one of {', '.join(ALIASES)}."})
    if version.registered_model_id != registered_model.pk:
        raise ValidationError({"version": "That version belongs to another model."})
    if version.status != VersionStatus.READY:
        reason = {
            VersionStatus.BELOW_GATE: "it is below the quality gate",
            VersionStatus.PENDING: "it is not ready yet",
            VersionStatus.FAILED: "it failed",
        }.get(VersionStatus(version.status), f"it is {version.status}")
        raise ValidationError(
            {"version": ValidationError(f"v{version.version} cannot be promoted: {reason}.", code=version.status)}
        )
    if version.lifecycle != Lifecycle.ACTIVE:
        raise ValidationError(
            {
                "version": ValidationError(
                    f"v{version.version} is {version.lifecycle}; restore it before promoting.", code=version.lifecycle
                )
            }
        )
    previous = Alias.objects.filter(registered_model=registered_model, name=name).select_related("version").first()
    alias, _ = Alias.objects.update_or_create(
        registered_model=registered_model, name=name, defaults={"version": version}
    )
    audit_record(
        actor=user,
        action=AuditAction.ALIAS_SET,
        version=version,
        subject=f"{registered_model.slug}@{name} → v{version.version}",
        detail={"alias": name, "version": version.version, "previous": previous.version.version if previous else None},
    )
    return alias


@transaction.atomic
def alias_remove(*, user: Any, registered_model: RegisteredModel, name: str) -> None:
    """Demote: remove the alias (maintainers only)."""
    role_require(user, registered_model.team, Role.MAINTAINER, f"demote {name}")
    alias = Alias.objects.filter(registered_model=registered_model, name=name).select_related("version").first()
    if alias is None:
        raise ValidationError({"alias": f"{registered_model.slug} has no {name} alias."})
    alias.delete()
    audit_record(
        actor=user,
        action=AuditAction.ALIAS_REMOVED,
        version=alias.version,
        subject=f"{registered_model.slug}@{name} (was v{alias.version.version})",
        detail={"alias": name, "version": alias.version.version},
    )


@transaction.atomic
def lifecycle_set(
    *,
    user: Any,
    registered_model: RegisteredModel,
    state: str,
    version: ModelVersion | None = None,
    reason: str = "",
) -> RegisteredModel | ModelVersion:
    """Deprecate, archive or restore (``active``) a model or one of its versions
    (maintainers only). Deprecated and archived things leave search results
    but stay resolvable by exact version."""
    role_require(user, registered_model.team, Role.MAINTAINER, f"mark it {state}")
    if state not in Lifecycle.values:
        raise ValidationError({"state": f"The state must be one of {', '.join(Lifecycle.values)}."})
    if len(reason) > 300:
        raise ValidationError({"reason": "A reason has at most 300 characters."})
    target: RegisteredModel | ModelVersion = registered_model
    if version is not None:
        if version.registered_model_id != registered_model.pk:
            raise ValidationError({"version": "That version belongs to another model."})
        target = version
    previous = target.lifecycle
    target.lifecycle = state
    target.lifecycle_reason = reason.strip() if state != Lifecycle.ACTIVE else ""
    target.save(update_fields=["lifecycle", "lifecycle_reason"])
    if isinstance(target, ModelVersion) and state != Lifecycle.ACTIVE:
        # A deprecated version stays resolvable by number, not through an alias.
        Alias.objects.filter(registered_model=registered_model, version=version).delete()
    registered_model_refresh(model=registered_model)
    audit_record(
        actor=user,
        action=AuditAction.LIFECYCLE_CHANGED,
        registered_model=registered_model,
        version=version,
        subject=str(target) if version is not None else registered_model.slug,
        detail={"from": previous, "to": state, "reason": reason[:300]},
    )
    return target


def model_delete(*, user: Any, registered_model: RegisteredModel) -> None:
    """Delete a model with no fine-tunes built on it (maintainers only); the
    audit event keeps its name."""
    role_require(user, registered_model.team, Role.MAINTAINER, "delete the model")
    if (
        ModelVersion.objects.filter(base_version__registered_model=registered_model)
        .exclude(registered_model=registered_model)
        .exists()
    ):
        raise PermissionDenied("Other models were fine-tuned from this one; archive it instead.")
    from django.db.models import ProtectedError

    slug, team, count = registered_model.slug, registered_model.team, registered_model.versions.count()
    try:
        with transaction.atomic():
            registered_model.delete()
    except ProtectedError:
        raise PermissionDenied(f"{slug} has fine-tune jobs built on it; archive it instead.") from None
    # Blobs stay in the store: another version may share them (no garbage collection yet).
    audit_record(actor=user, action=AuditAction.DELETED, team=team, subject=slug, detail={"versions": count})
