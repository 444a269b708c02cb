"""Registering models, versions, metrics and aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils.text import slugify

from catalog.models import (
    Alias,
    DatasetVersion,
    Domain,
    Metric,
    Modality,
    ModelVersion,
    RegisteredModel,
    ResultKind,
    Team,
    VersionStatus,
    Visibility,
)
from catalog.storage import artifact_put_path, safe_file_name

# The metric names that feed the catalogue's precision/coverage columns.
PRECISION_METRIC = "macro_precision"
COVERAGE_METRIC = "coverage"


def registered_model_create(
    *,
    name: str,
    team: Team,
    modality: Modality,
    result_kind: ResultKind,
    domain: Domain,
    summary: str = "",
    description: str = "",
    visibility: str = Visibility.INTERNAL,
    slug: str | None = None,
) -> RegisteredModel:
    slug = slug or slugify(name)
    if not slug:
        raise ValidationError({"name": "The name must contain letters or digits."})
    if RegisteredModel.objects.filter(slug=slug).exists():
        raise ValidationError({"name": f"A model with the slug {slug!r} already exists."})
    model = RegisteredModel.objects.create(
        slug=slug,
        name=name,
        team=team,
        modality=modality,
        result_kind=result_kind,
        domain=domain,
        summary=summary,
        description=description,
        visibility=visibility,
    )
    registered_model_refresh(model=model)
    return model


def artifact_files_store(*, directory: Path, names: list[str]) -> list[dict[str, Any]]:
    """Put the named files of a directory into the artifact store; safetensors
    files are stored split into their tensors, so a fine-tune's frozen encoder
    shares its bytes with its base's (catalog/storage.py)."""
    entries = []
    for name in names:
        stored = artifact_put_path(directory / safe_file_name(name), split=True)
        entries.append({"name": name, "sha256": stored.sha256, "size": stored.size})
    return entries


@transaction.atomic
def model_version_create(
    *,
    registered_model: RegisteredModel,
    family: str,
    files: list[dict[str, Any]],
    weights_name: str = "model.safetensors",
    framework: str = "pytorch",
    hyperparameters: dict[str, Any] | None = None,
    parameter_count: int | None = None,
    input_schema: dict[str, Any] | None = None,
    output_schema: dict[str, Any] | None = None,
    labels: list[str] | None = None,
    base_version: ModelVersion | None = None,
    dataset_version: DatasetVersion | None = None,
    code_version: str = "",
    description: str = "",
) -> ModelVersion:
    weights = next((f for f in files if f["name"] == weights_name), None)
    if weights is None:
        raise ValidationError({"files": f"The artifact has no {weights_name}."})
    # Lock the parent row so that two writers never pick the same number.
    RegisteredModel.objects.select_for_update().filter(pk=registered_model.pk).first()
    last = registered_model.versions.aggregate(n=Max("version"))["n"] or 0
    return ModelVersion.objects.create(
        registered_model=registered_model,
        version=last + 1,
        family=family,
        framework=framework,
        weights_sha256=weights["sha256"],
        weights_size=weights["size"],
        files=files,
        hyperparameters=hyperparameters or {},
        parameter_count=parameter_count,
        input_schema=input_schema or {},
        output_schema=output_schema or {},
        labels=labels or [],
        base_version=base_version,
        dataset_version=dataset_version,
        code_version=code_version,
        description=description,
    )


def metrics_record(
    *,
    version: ModelVersion,
    metrics: dict[str, float],
    evaluation_dataset: str,
    evaluation_dataset_version: DatasetVersion | None = None,
    split: str = "holdout",
    sample_count: int | None = None,
) -> None:
    for name, value in metrics.items():
        Metric.objects.update_or_create(
            version=version,
            name=name,
            evaluation_dataset=evaluation_dataset,
            split=split,
            defaults={
                "value": float(value),
                "evaluation_dataset_version": evaluation_dataset_version,
                "sample_count": sample_count,
            },
        )


@transaction.atomic
def model_version_finish(*, version: ModelVersion, status: str = VersionStatus.READY) -> ModelVersion:
    """Move a pending version to ready (or below_gate/failed); ready is final."""
    updated = ModelVersion.objects.filter(pk=version.pk, status=VersionStatus.PENDING).update(status=status)
    version.refresh_from_db()
    if not updated and version.status != status:
        raise ValidationError(f"{version} is already {version.status}.")
    registered_model_refresh(model=version.registered_model)
    return version


def alias_set(*, registered_model: RegisteredModel, name: str, version: ModelVersion) -> Alias:
    alias = Alias(registered_model=registered_model, name=name, version=version)
    alias.clean()
    obj, _ = Alias.objects.update_or_create(registered_model=registered_model, name=name, defaults={"version": version})
    return obj


def registered_model_refresh(*, model: RegisteredModel) -> None:
    """Recompute the denormalised search columns from the latest ready version."""
    ready = model.versions.filter(status=VersionStatus.READY).order_by("-version").prefetch_related("metrics")
    # Deprecated and archived versions stop being "the latest" unless nothing else is ready.
    latest = ready.filter(lifecycle="active").first() or ready.first()
    model.latest_version = latest
    model.framework = latest.framework if latest else ""
    model.precision = latest.metric(PRECISION_METRIC) if latest else None
    model.coverage = latest.metric(COVERAGE_METRIC) if latest else None
    parts = [
        model.team.name,
        model.modality.label,
        model.result_kind.label,
        model.domain.label,
        model.description,
    ]
    parts += [model.license, " ".join(str(tag) for tag in model.tags)]
    if latest:
        parts += [latest.family, latest.framework, " ".join(str(label) for label in latest.labels)]
        # What registration read from the folder: searchable by architecture and type.
        intake = latest.intake or {}
        parts += [" ".join(intake.get("architectures", [])), str(intake.get("model_type", ""))]
    model.search_document = "\n".join(p for p in parts if p)
    model.save(update_fields=["latest_version", "framework", "precision", "coverage", "search_document", "updated_at"])
