"""``catalog_synth``: many synthetic but realistic entries, for scale tests and
benchmarks. Rows are written with bulk inserts in batches."""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
from collections.abc import Callable

from django.db import transaction
from django.db.models import OuterRef, Subquery

from catalog.models import (
    Domain,
    Metric,
    Modality,
    ModelVersion,
    RegisteredModel,
    ResultKind,
    Team,
    Variant,
    VariantStatus,
    VersionStatus,
    Visibility,
)
from catalog.services.taxonomy import taxonomy_load
from catalog.signals import catalog_changed
from catalog.storage import StoredArtifact, artifact_put

ARCHS = [
    "ResNet",
    "ViT",
    "BERT",
    "MiniLM",
    "DistilBERT",
    "EfficientNet",
    "LightGBM-distilled MLP",
    "Wav2Vec",
    "UNet",
    "YOLO",
    "GraphSAGE",
    "TCN",
    "LSTM",
    "CLIP",
    "T5",
    "XLM-R",
]
QUALIFIERS = ["tiny", "small", "base", "large", "distilled", "quantised", "multilingual", "robust"]
TEAMS = ["Search Relevance", "Vision Platform", "Risk Analytics", "Customer Care AI", "Health Research"]
FRAMEWORKS = ["pytorch", "pytorch", "pytorch", "onnx", "tensorflow"]
WORDS = [
    "sentiment",
    "spam",
    "intent",
    "toxicity",
    "defect",
    "churn",
    "fraud",
    "species",
    "topic",
    "language",
    "emotion",
    "damage",
    "tumour",
    "crop",
    "anomaly",
    "demand",
    "ticket",
    "priority",
]


SYNTH_VARIANTS = ("onnx-fp32", "onnx-int8")


def synth_bundles() -> dict[str, StoredArtifact]:
    """One small, real bundle per synthetic variant name, in the artifact store.

    Synthetic entries are marked served, so each must have a file behind it: a
    download answers a tar (``manifest.json`` + a note, the manifest listing
    the note's sha256 like every bundle's), which the pull CLI verifies like
    any other. Deterministic bytes: the same blob on every run.
    """
    out = {}
    for name in SYNTH_VARIANTS:
        note = (
            f"Synthetic catalogue entry ({name}): made by `manage.py catalog_synth` for scale tests; "
            "it holds no model.\n"
        ).encode()
        manifest = {
            "synthetic": True,
            "variant": name,
            "files": {"README.txt": {"sha256": hashlib.sha256(note).hexdigest(), "size": len(note)}},
        }
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for member, body in (
                ("manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode()),
                ("README.txt", note),
            ):
                info = tarfile.TarInfo(member)
                info.size, info.mtime, info.mode = len(body), 0, 0o644
                tar.addfile(info, io.BytesIO(body))
        buffer.seek(0)
        out[name] = artifact_put(buffer)
    return out


def catalog_synth(
    *,
    count: int,
    seed: int = 42,
    batch: int = 5000,
    echo: Callable[[str], None] = lambda s: None,
    embed: bool = True,
) -> int:
    """Create ``count`` synthetic registered models, each with one ready
    version, metrics and two served variants, and (``embed``) a search vector
    derived from encoded templates. Returns the number created."""
    from django.conf import settings

    if not Modality.objects.exists():
        taxonomy_load(path=settings.BASE_DIR / "fixtures" / "taxonomy.json")
    rng = random.Random(seed)
    bundles = synth_bundles()
    modalities = list(Modality.objects.all())
    results = list(ResultKind.objects.all())
    domains = list(Domain.objects.all())
    teams = [Team.objects.get_or_create(slug=t.lower().replace(" ", "-"), defaults={"name": t})[0] for t in TEAMS]
    start = RegisteredModel.objects.filter(slug__startswith="synth-").count()
    made = 0
    while made < count:
        n = min(batch, count - made)
        with transaction.atomic():
            models = []
            parts = []  # (task, domain, modality, result, architecture): their vectors make the search vector
            for i in range(start + made, start + made + n):
                mod, res, dom = rng.choice(modalities), rng.choice(results), rng.choice(domains)
                word, arch, qual = rng.choice(WORDS), rng.choice(ARCHS), rng.choice(QUALIFIERS)
                precision = round(rng.uniform(0.55, 0.995), 4)
                team = rng.choice(teams)
                parts.append(
                    (
                        f"{word} {res.name.lower()}",
                        *(n.label.replace(" › ", " / ") for n in (dom, mod, res)),
                        f"{arch} {qual}",
                    )
                )
                models.append(
                    RegisteredModel(
                        slug=f"synth-{i}",
                        name=f"{dom.name} {word} {arch} {qual} #{i}",
                        summary=f"{arch} ({qual}) for {word} {res.name.lower()} on {mod.name.lower()} from {dom.name}.",
                        team=team,
                        visibility=Visibility.PRIVATE if rng.random() < 0.2 else Visibility.INTERNAL,
                        modality=mod,
                        result_kind=res,
                        domain=dom,
                        framework=rng.choice(FRAMEWORKS),
                        precision=precision,
                        coverage=round(rng.uniform(0.5, 1.0), 4),
                        search_document=f"{team.name}\n{mod.path}\n{res.path}\n{dom.path}\n{word} {arch}",
                    )
                )
            RegisteredModel.objects.bulk_create(models, batch_size=1000)
            if embed:
                from discovery.services import embeddings_store_synthetic

                embeddings_store_synthetic(models=models, parts=parts)
            versions = [
                ModelVersion(
                    registered_model=m,
                    version=1,
                    status=VersionStatus.READY,
                    family="synthetic",
                    framework=m.framework,
                    weights_sha256="0" * 64,
                    weights_size=rng.randint(10**6, 10**9),
                    parameter_count=rng.randint(10**5, 10**9),
                    labels=[],
                    hyperparameters={"synthetic": True},
                )
                for m in models
            ]
            ModelVersion.objects.bulk_create(versions, batch_size=1000)
            Metric.objects.bulk_create(
                [
                    Metric(version=v, name=name, value=value, evaluation_dataset="synthetic holdout")
                    for v, m in zip(versions, models, strict=True)
                    for name, value in (("macro_precision", m.precision or 0.0), ("coverage", m.coverage or 0.0))
                ],
                batch_size=2000,
            )
            variants = []
            for v in versions:
                base = rng.uniform(2, 80)
                for name, numeric, factor in (
                    ("onnx-fp32", "fp32", 1.0),
                    ("onnx-int8", "int8", rng.uniform(0.25, 0.6)),
                ):
                    p50 = base * factor
                    variants.append(
                        Variant(
                            version=v,
                            name=name,
                            format="onnx",
                            precision=numeric,
                            runtime="onnxruntime",
                            hardware="cpu",
                            status=VariantStatus.SERVED,
                            sha256=bundles[name].sha256,
                            size=bundles[name].size,
                            latency_p50_ms=round(p50, 3),
                            latency_p95_ms=round(p50 * 1.3, 3),
                            parity={"synthetic": True},
                        )
                    )
            Variant.objects.bulk_create(variants, batch_size=2000)
            RegisteredModel.objects.filter(pk__in=[m.pk for m in models]).update(
                latest_version=Subquery(
                    ModelVersion.objects.filter(registered_model=OuterRef("pk")).order_by("-version").values("id")[:1]
                )
            )
        catalog_changed()  # bulk writes send no signals
        made += n
        echo(f"{made}/{count}")
    return made
