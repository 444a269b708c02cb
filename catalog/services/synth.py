"""``catalog_synth``: many synthetic but realistic entries, for scale tests and
benchmarks. Rows are written with bulk inserts in batches."""

from __future__ import annotations

import random
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
                            sha256="0" * 64,
                            size=v.weights_size,
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
