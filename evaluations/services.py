"""Evaluating catalogued classifiers on a team's dataset (writes).

``evaluation_request`` checks the choice (the user's team's dataset, at most
``EVALUATION_MAX_MODELS`` visible text classifiers whose labels cover the
dataset's, directly or through a label mapping) and queues
``evaluations.tasks.evaluation_run`` after commit. ``evaluation_execute`` (the
worker) runs each model's served ONNX variant (with the session settings its
manifest records) — or, without one, its torch weights through
``runners.families.text_classifier`` — on every row, batched by length, and
records macro precision/recall/F1, coverage at the threshold and latency on
the entry and as ``Metric`` rows tied to the dataset version
(``metrics_record``), so they show on model pages and in metric filters.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from catalog.models import DatasetVersion, ModelVersion, Team
from catalog.services.predict import CLASSIFIER_FAMILIES, PredictUnavailable, predict_variant, runner_get
from catalog.services.registry import metrics_record
from evaluations.models import EntryStatus, Evaluation, EvaluationEntry, EvaluationStatus

log = logging.getLogger(__name__)

SPLIT = "team-evaluation"
HEADLINE = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "coverage")


def max_models() -> int:
    return int(getattr(settings, "EVALUATION_MAX_MODELS", 5))


def evaluation_dataset_name(dataset_version: DatasetVersion) -> str:
    """The ``Metric.evaluation_dataset`` name of a dataset version."""
    return f"{dataset_version.dataset.name} ({dataset_version.sha256[:8]})"


def label_cover(*, dataset_labels: list[str], model_labels: list[str], mapping: dict[str, str]) -> list[str]:
    """Dataset labels the model cannot answer (after the mapping); empty when it covers them."""
    known = {str(label) for label in model_labels}
    return [d for d in dataset_labels if mapping.get(d, d) not in known]


@transaction.atomic
def evaluation_request(
    *,
    team: Team,
    dataset_version: DatasetVersion,
    versions: list[ModelVersion],
    user: Any = None,
    label_mappings: dict[int, dict[str, str]] | None = None,
    threshold: float = 0.9,
    enqueue: bool = True,
) -> Evaluation:
    """Create an evaluation (refusing a choice that cannot run) and queue it."""
    errors: dict[str, list[str]] = {}
    if dataset_version.dataset.team_id != team.pk:
        errors["dataset_version"] = ["The dataset belongs to another team."]
    if not versions:
        errors["models"] = ["Pick at least one model."]
    elif len(versions) > max_models():
        errors["models"] = [f"At most {max_models()} models per evaluation ({len(versions)} picked)."]
    if not 0.0 <= threshold <= 1.0:
        errors["threshold"] = ["The threshold is a probability between 0 and 1."]
    mappings = label_mappings or {}
    dataset_labels = list(dataset_version.labels)
    for v in versions:
        name = v.registered_model.slug
        if v.family not in CLASSIFIER_FAMILIES:
            errors.setdefault("models", []).append(f"{name} is not a text classifier ({v.family}).")
            continue
        missing = label_cover(dataset_labels=dataset_labels, model_labels=v.labels, mapping=mappings.get(v.pk, {}))
        if missing:
            errors.setdefault("models", []).append(
                f"{name} has no label for {', '.join(missing[:5])}: give a label mapping."
            )
    if errors:
        raise ValidationError(errors)
    evaluation = Evaluation.objects.create(
        team=team, dataset_version=dataset_version, created_by=user, threshold=threshold
    )
    EvaluationEntry.objects.bulk_create(
        EvaluationEntry(evaluation=evaluation, version=v, label_mapping=mappings.get(v.pk, {})) for v in versions
    )
    if enqueue:
        evaluation_id = evaluation.pk
        transaction.on_commit(lambda: evaluation_enqueue(evaluation_id=evaluation_id))
    return evaluation


def evaluation_enqueue(*, evaluation_id: int) -> None:
    from evaluations.tasks import evaluation_run

    result = evaluation_run.delay(evaluation_id)
    Evaluation.objects.filter(pk=evaluation_id).update(celery_task_id=str(result.id or "")[:60])


def _claim(evaluation_id: int) -> Evaluation | None:
    claimed = Evaluation.objects.filter(pk=evaluation_id, status=EvaluationStatus.QUEUED).update(
        status=EvaluationStatus.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return None
    return Evaluation.objects.select_related("dataset_version__dataset").get(pk=evaluation_id)


def _torch_probabilities(version: ModelVersion, texts: list[str]) -> np.ndarray:
    """The torch weights' probabilities, the rows sorted by token length first
    (each batch pads to its longest: neighbours of similar length pad little)
    and the answers put back in the rows' order."""
    import json

    from catalog.storage import artifact_materialize, artifact_tmpdir
    from runners.compile import tokenize
    from runners.families import text_classifier

    with artifact_tmpdir() as tmp:
        model_dir = artifact_materialize(version.files, tmp / "model")
        if not texts:
            return text_classifier.predict(model_dir, texts, device="cpu")
        config = json.loads((model_dir / text_classifier.CLASSIFIER_CONFIG).read_text())
        order = tokenize(model_dir, texts, int(config["max_length"])).order()
        probs = text_classifier.predict(model_dir, [texts[i] for i in order], device="cpu")
    result = np.empty_like(probs)
    result[order] = probs
    return result


def _probabilities(version: ModelVersion, texts: list[str]) -> tuple[np.ndarray, str, float | None, float]:
    """Probabilities over the version's labels, the runner's name, its compile-time p95,
    and the mean milliseconds per input of this run."""
    try:
        picked, variant = predict_variant(model=version.registered_model, version=version.version)
    except PredictUnavailable:
        variant = None
    if variant is not None:
        runner = runner_get(picked, variant)
        started = time.perf_counter()
        # At the rows' own lengths: sorted by length into batches, each padded
        # to its longest, answers in the rows' order (catalog.services.predict).
        probs = runner.run(texts) if texts else np.zeros((0, len(version.labels)))
        per_input = (time.perf_counter() - started) * 1000.0 / max(len(texts), 1)
        return probs, variant.name, variant.latency_p95_ms, per_input
    if version.family != "text-classifier":
        raise PredictUnavailable(f"v{version.version} has no served ONNX variant and no torch runner here.")
    started = time.perf_counter()
    probs = _torch_probabilities(version, texts)
    per_input = (time.perf_counter() - started) * 1000.0 / max(len(texts), 1)
    return probs, "torch (no ONNX variant)", None, per_input


def entry_evaluate(*, entry: EvaluationEntry, texts: list[str], labels: list[str], threshold: float) -> None:
    """Score one model version; the dataset's labels are the classes."""
    from runners.evaluation import classification_report

    version = entry.version
    probs, runner, p95, per_input = _probabilities(version, texts)
    model_labels = [str(label) for label in version.labels]
    dataset_labels = sorted(set(labels))
    columns = [model_labels.index(entry.label_mapping.get(d, d)) for d in dataset_labels]
    mapped = probs[:, columns]
    other = np.clip(1.0 - mapped.sum(axis=1, keepdims=True), 0.0, 1.0)
    class_names = list(dataset_labels)
    if len(columns) < len(model_labels):
        mapped = np.concatenate([mapped, other], axis=1)  # labels the dataset does not use
        class_names.append("(other)")
    index = {name: i for i, name in enumerate(dataset_labels)}
    report = classification_report([index[label] for label in labels], mapped, class_names, threshold)
    headline = report.headline()
    for name in HEADLINE:
        setattr(entry, name, headline[name])
    entry.runner, entry.variant_p95_ms, entry.latency_ms = runner, p95, per_input
    entry.sample_count = report.samples
    entry.status = EntryStatus.DONE
    entry.save()
    metrics_record(
        version=version,
        metrics={name: headline[name] for name in HEADLINE},
        evaluation_dataset=evaluation_dataset_name(entry.evaluation.dataset_version),
        evaluation_dataset_version=entry.evaluation.dataset_version,
        split=SPLIT,
        sample_count=report.samples,
    )


def evaluation_execute(*, evaluation_id: int) -> Evaluation | None:
    """Run a queued evaluation (the worker); one model failing does not stop the others."""
    from catalog.services.datasets import dataset_load

    evaluation = _claim(evaluation_id)
    if evaluation is None:
        return None
    try:
        data = dataset_load(version=evaluation.dataset_version)
    except Exception as exc:  # noqa: BLE001 - recorded on the evaluation
        Evaluation.objects.filter(pk=evaluation.pk).update(
            status=EvaluationStatus.FAILED, error=f"The dataset could not be read: {exc}", finished_at=timezone.now()
        )
        return Evaluation.objects.get(pk=evaluation.pk)
    entries = list(
        evaluation.entries.select_related("version__registered_model", "evaluation__dataset_version__dataset")
    )
    for done, entry in enumerate(entries, start=1):
        try:
            entry_evaluate(entry=entry, texts=data.texts, labels=data.labels, threshold=evaluation.threshold)
        except Exception as exc:  # noqa: BLE001 - one model failing must not lose the others
            log.exception("evaluation %s: %s failed", evaluation.pk, entry.version)
            EvaluationEntry.objects.filter(pk=entry.pk).update(
                status=EntryStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
            )
        Evaluation.objects.filter(pk=evaluation.pk).update(progress=done / len(entries))
    failed = evaluation.entries.filter(status=EntryStatus.FAILED).count()
    Evaluation.objects.filter(pk=evaluation.pk).update(
        status=EvaluationStatus.FAILED if failed == len(entries) else EvaluationStatus.SUCCEEDED,
        error="Every model failed." if failed == len(entries) else "",
        progress=1.0,
        finished_at=timezone.now(),
    )
    return Evaluation.objects.get(pk=evaluation.pk)
