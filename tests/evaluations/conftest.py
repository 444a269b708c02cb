"""A tiny text classifier (random MiniLM-shaped BERT + a trained head) with a
compiled onnx-fp32 variant, built once per session; catalogue rows per test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

LABELS_SEED = 2


@dataclass(frozen=True)
class Built:
    model_dir: Path
    bundle: Path
    labels: list[str]


@pytest.fixture(scope="session")
def tiny_classifier_build(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    from runners import compile as C
    from runners.families import text_classifier as tc
    from runners.synthetic_text import support_tickets

    rows = support_tickets(120, seed=LABELS_SEED, ambiguous_share=0.0)
    texts, labels = [t for t, _ in rows], [label for _, label in rows]
    out = tmp_path_factory.mktemp("tiny-clf")
    result = tc.fit(tiny_bert_dir, texts, labels, out, tc.FitParams(epochs=30, learning_rate=0.05))
    spec = next(s for s in C.SPECS if s.name == "onnx-fp32")
    compiled = C.compile_version(
        family="text-classifier",
        model_dir=out,
        work=tmp_path_factory.mktemp("tiny-clf-work"),
        eval_inputs=C.EvalInputs(texts=texts[:16]),
        manifest_base={"labels": result.labels},
        specs=(spec,),
    )
    assert compiled[0].status == "served", compiled[0].reason
    assert compiled[0].bundle_path is not None
    return Built(out, compiled[0].bundle_path, list(result.labels))


@pytest.fixture
def make_text_classifier(
    tiny_classifier_build: Built, taxonomy: None, make_team: Callable[..., Any]
) -> Callable[..., Any]:
    """A ready text-classifier version of a new model, with a served onnx-fp32 variant (or none)."""
    from catalog.models import Domain, Modality, ResultKind, Variant, VariantStatus, Visibility
    from catalog.services.registry import (
        artifact_files_store,
        metrics_record,
        model_version_create,
        model_version_finish,
        registered_model_create,
    )
    from catalog.storage import artifact_put_path

    def make(
        name: str,
        *,
        team: Any = None,
        visibility: str = Visibility.INTERNAL,
        variant: bool = True,
        labels: list[str] | None = None,
        input_schema: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> Any:
        built = tiny_classifier_build
        model = registered_model_create(
            name=name,
            team=team or make_team("Team A"),
            visibility=visibility,
            modality=Modality.objects.get(path="text/natural-language/english"),
            result_kind=ResultKind.objects.get(path="classification/multiclass"),
            domain=Domain.objects.get(path="general/wikipedia"),
        )
        names = sorted(p.name for p in built.model_dir.iterdir() if p.is_file())
        version = model_version_create(
            registered_model=model,
            family="text-classifier",
            files=artifact_files_store(directory=built.model_dir, names=names),
            labels=labels or built.labels,
            input_schema=input_schema or {"type": "text", "language": "en", "max_tokens": 64},
        )
        if metrics:
            metrics_record(version=version, metrics=metrics, evaluation_dataset="shared holdout")
        if variant:
            stored = artifact_put_path(built.bundle)
            Variant.objects.create(
                version=version,
                name="onnx-fp32",
                format="onnx",
                precision="fp32",
                runtime="onnxruntime",
                hardware="cpu",
                status=VariantStatus.SERVED,
                sha256=stored.sha256,
                size=stored.size,
                latency_p50_ms=1.0,
                latency_p95_ms=1.5,
            )
        model_version_finish(version=version)
        model.refresh_from_db()
        return model

    return make
