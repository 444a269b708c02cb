"""Compiling a version into served variants (a task on the ``compile`` queue)."""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction

from catalog.models import ModelVersion, Variant, VariantStatus, VersionStatus
from catalog.services.retry import db_retry
from catalog.storage import artifact_materialize, artifact_put_path, artifact_tmpdir

log = logging.getLogger(__name__)

COMPILABLE = ("text-classifier", "sentence-encoder", "mlp-classifier", "sequence-classifier")
DONE = (VariantStatus.SERVED, VariantStatus.REJECTED, VariantStatus.SKIPPED)
PARITY_MAX_SAMPLES = 2000


def compile_enqueue(*, version_id: int) -> None:
    from catalog.tasks import compile_run

    compile_run.delay(version_id)


def compile_request(*, version: ModelVersion) -> bool:
    """Queue a compile on commit (idempotent: built variants are kept)."""
    if version.family not in COMPILABLE or version.status != VersionStatus.READY:
        return False
    transaction.on_commit(lambda: compile_enqueue(version_id=version.pk))
    return True


def _eval_inputs(version: ModelVersion, model_dir: Path) -> Any:
    """The version's own held-out split when it has one, else generated inputs."""
    from runners.compile import EvalInputs

    if version.family == "text-classifier" and version.dataset_version is not None:
        from catalog.services.datasets import dataset_load
        from runners.splits import stratified_split

        data = dataset_load(version=version.dataset_version)
        hp = version.hyperparameters
        train, held = stratified_split(data.targets, float(hp.get("holdout", 0.2)), int(hp.get("seed", 0)))
        # The whole held-out split judges parity (up to PARITY_MAX_SAMPLES: one
        # flip must not be the whole 1% margin); int8 is calibrated on the
        # training part, never on what judges it.
        held = held[:PARITY_MAX_SAMPLES]
        return EvalInputs(
            texts=[data.texts[i] for i in held],
            targets=[data.targets[i] for i in held],
            calibration_texts=[data.texts[i] for i in train],
        )
    if version.family == "mlp-classifier":
        config = json.loads((model_dir / "config.json").read_text())
        rng = np.random.default_rng(0)
        mean, scale = np.asarray(config["mean"]), np.asarray(config["scale"])
        return EvalInputs(features=(mean + scale * rng.normal(size=(256, len(mean)))).astype(np.float32))
    return EvalInputs()


def _base_variants(version: ModelVersion, dest: Path) -> Any:
    """The version this one was fine-tuned from, as the compile's int8 plan
    inheritance needs it (``runners.compile.BaseVariants``): its encoder
    weights (``model.safetensors``) and its served int8 bundles, copied into
    ``dest``; None when there is no base or nothing to inherit."""
    from runners.compile import BaseVariants

    parent = version.base_version
    if parent is None:
        return None
    bundles = list(
        Variant.objects.filter(version=parent, status=VariantStatus.SERVED, precision="int8")
        .exclude(sha256="")
        .values_list("name", "sha256")
    )
    weights = [f for f in parent.files if f.get("name") == "model.safetensors"]
    if not bundles or not weights:
        return None
    try:
        artifact_materialize(weights + [{"name": f"{name}.tar", "sha256": sha} for name, sha in bundles], dest)
    except Exception:  # noqa: BLE001 - inheriting is an optimisation: without the base's files, the usual search
        log.exception(
            "could not read the int8 bundles of %s v%s; planning from scratch",
            parent.registered_model.slug,
            parent.version,
        )
        return None
    return BaseVariants(
        label=f"{parent.registered_model.slug} v{parent.version}",
        model_dir=dest,
        bundles={name: dest / f"{name}.tar" for name, _ in bundles},
    )


def _manifest_base(version: ModelVersion) -> dict[str, Any]:
    model = version.registered_model
    preprocessing: dict[str, Any]
    if version.family == "mlp-classifier":
        preprocessing = {"input": "float32 features [batch, n]", "standardisation": "inside the graph"}
    else:
        preprocessing = {
            "tokenizer": "tokenizer.json (Hugging Face tokenizers)",
            "pooling": "mean over attention_mask",
            "max_length": version.input_schema.get("max_tokens", 256),
            "inputs": "int64 input_ids and attention_mask [batch, sequence]",
        }
    return {
        "model": model.slug,
        "model_name": model.name,
        "version": version.version,
        "family": version.family,
        "input_schema": version.input_schema,
        "output_schema": version.output_schema,
        "labels": version.labels,
        "preprocessing": preprocessing,
        "metrics": {
            m.name: {"value": m.value, "evaluation_dataset": m.evaluation_dataset, "split": m.split}
            for m in version.metrics.all()
        },
        "weights_sha256": version.weights_sha256,
    }


def version_compile(*, version_id: int, corrupt: Any = None) -> list[Variant]:
    """Build, check and store the variants a version lacks; returns them all."""
    from runners.compile import SPECS, compile_version

    version = (
        ModelVersion.objects.select_related("registered_model", "dataset_version", "base_version__registered_model")
        .filter(pk=version_id)
        .first()
    )
    if version is None or version.family not in COMPILABLE:
        return []
    # Failed attempts are retried; built, rejected and skipped ones are kept.
    Variant.objects.filter(version=version).exclude(status__in=DONE).delete()
    done = set(Variant.objects.filter(version=version).values_list("name", flat=True))
    if all(spec.name in done for spec in SPECS):
        return list(version.variants.all())
    # Pending rows say "a compile is under way" (the page shows them); a worker
    # killed mid-compile leaves them, and compile_requeue_stale starts it again.
    for spec in SPECS:
        if spec.name not in done:
            Variant.objects.get_or_create(
                version=version,
                name=spec.name,
                hardware=spec.hardware,
                defaults={"format": spec.format, "precision": spec.precision, "runtime": spec.runtime},
            )
    try:
        with artifact_tmpdir() as tmp:
            model_dir = artifact_materialize(version.files, Path(tmp) / "model")
            results = compile_version(
                family=version.family,
                model_dir=model_dir,
                work=Path(tmp) / "work",
                eval_inputs=_eval_inputs(version, model_dir),
                manifest_base=_manifest_base(version),
                skip=done,
                corrupt=corrupt,
                base=_base_variants(version, Path(tmp) / "base"),
            )
            _record(version, results)
    except Exception as exc:
        # A compile that cannot run at all says why, and is not retried by the
        # stale-compile check (only pending rows are).
        Variant.objects.filter(version=version, status=VariantStatus.PENDING).update(
            status=VariantStatus.FAILED, status_reason=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    Variant.objects.filter(version=version, status=VariantStatus.PENDING).update(
        status=VariantStatus.FAILED, status_reason="the compile produced no result for this variant"
    )
    return list(version.variants.all())


def _record(version: ModelVersion, results: list[Any]) -> None:
    for r in results:
        # Split: the bundle's tensors are chunks shared with every other bundle
        # and version file holding the same bytes (catalog/storage.py).
        stored = artifact_put_path(r.bundle_path, split=True) if r.bundle_path is not None else None
        batch1 = next((lat for lat in r.latency if lat.batch == 1 and lat.lengths == "fixed"), None)
        # The bundle is stored; recording it is retried on a transient
        # database error (idempotent: one row per version/name/hardware).
        record = partial(
            Variant.objects.update_or_create,
            version=version,
            name=r.spec.name,
            hardware=r.spec.hardware,
            defaults={
                "format": r.spec.format,
                "precision": r.spec.precision,
                "runtime": r.spec.runtime,
                "opset": r.opset,
                "toolchain": r.toolchain,
                "status": r.status,
                "status_reason": r.reason,
                "sha256": stored.sha256 if stored else "",
                "size": stored.size if stored else None,
                "parity": r.parity.__dict__ if r.parity else {},
                # "1"/"32": padded to a fixed length; "1-real"/"32-real": held-out
                # inputs at their own lengths, batched by length.
                "latency": {
                    (str(lat.batch) if lat.lengths == "fixed" else f"{lat.batch}-{lat.lengths}"): {
                        "p50_ms": lat.p50_ms,
                        "p95_ms": lat.p95_ms,
                        "runs": lat.runs,
                        "sequence_length": lat.sequence_length,
                        "lengths": lat.lengths,
                    }
                    for lat in r.latency
                },
                "latency_p50_ms": batch1.p50_ms if batch1 else None,
                "latency_p95_ms": batch1.p95_ms if batch1 else None,
                "hardware_fingerprint": r.fingerprint,
            },
        )
        db_retry(record, what=f"{version} {r.spec.name}: record variant")
        log.info("%s %s: %s %s", version, r.spec.name, r.status, r.reason)


def compile_requeue_stale() -> list[int]:
    """Start again the compiles whose worker died: their variants are still
    ``pending`` after ``COMPILE_STALE_AFTER_S`` (a broker such as kombu's
    filesystem transport never redelivers the message of a killed worker).
    Each version is claimed with a conditional UPDATE, so that only one worker
    re-enqueues it; a second delivery would only redo work, never duplicate rows."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.COMPILE_STALE_AFTER_S)
    stale = set(
        Variant.objects.filter(status=VariantStatus.PENDING, created_at__lt=cutoff).values_list("version_id", flat=True)
    )
    requeued = []
    for version_id in sorted(stale):
        claimed = Variant.objects.filter(
            version_id=version_id, status=VariantStatus.PENDING, created_at__lt=cutoff
        ).update(created_at=now)
        if claimed:
            log.warning("compile of version %s went stale (its worker died?): queued again", version_id)
            compile_enqueue(version_id=version_id)
            requeued.append(version_id)
    return requeued
