"""Shared fixtures: an isolated artifact store, the taxonomy trees, factories."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Playwright's sync API runs an event loop in the main thread; the ORM calls the
# tests make around it are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

BASE_DIR = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def artifact_store(settings: Any, tmp_path: Path) -> Path:
    """Every test gets its own, empty filesystem artifact store."""
    root = tmp_path / "artifacts"
    settings.ARTIFACT_TMP_DIR = tmp_path / "tmp"
    settings.ARTIFACT_TMP_DIR.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root), "allow_overwrite": True},
        },
    }
    return root


@pytest.fixture
def taxonomy(db: None) -> None:
    from catalog.services.taxonomy import taxonomy_load

    taxonomy_load(path=BASE_DIR / "fixtures" / "taxonomy.json")


@pytest.fixture
def make_team(db: None) -> Callable[..., Any]:
    from catalog.services.teams import team_get_or_create

    def make(name: str = "Team A") -> Any:
        return team_get_or_create(name=name)

    return make


@pytest.fixture
def make_user(db: None) -> Callable[..., Any]:
    from django.contrib.auth import get_user_model

    def make(username: str = "alice", team: Any = None, password: str = "pw-correct-horse") -> Any:
        user = get_user_model().objects.create_user(username=username, password=password)
        if team is not None:
            team.members.add(user)
        return user

    return make


@pytest.fixture
def make_model(taxonomy: None, make_team: Callable[..., Any]) -> Callable[..., Any]:
    """A registered model with one ready version (real small weights file),
    metrics and, optionally, served variants."""
    from catalog.models import Domain, Modality, ResultKind, Variant, VariantStatus, Visibility
    from catalog.services.registry import (
        metrics_record,
        model_version_create,
        model_version_finish,
        registered_model_create,
    )
    from catalog.storage import artifact_put

    counter = {"n": 0}

    def make(
        name: str | None = None,
        *,
        modality: str = "text/natural-language/english",
        result: str = "classification/multiclass",
        domain: str = "general/wikipedia",
        team: Any = None,
        visibility: str = Visibility.INTERNAL,
        precision: float | None = 0.9,
        coverage: float = 0.8,
        summary: str = "",
        labels: list[str] | None = None,
        variants: list[dict[str, Any]] | None = None,
    ) -> Any:
        import io

        counter["n"] += 1
        name = name or f"Model {counter['n']}"
        model = registered_model_create(
            name=name,
            team=team or make_team("Team A"),
            modality=Modality.objects.get(path=modality),
            result_kind=ResultKind.objects.get(path=result),
            domain=Domain.objects.get(path=domain),
            visibility=visibility,
            summary=summary or f"{name} summary",
        )
        blob = artifact_put(io.BytesIO(f"weights of {name}".encode()))
        version = model_version_create(
            registered_model=model,
            family="mlp-classifier",
            files=[{"name": "model.safetensors", "sha256": blob.sha256, "size": blob.size}],
            labels=labels or ["a", "b"],
        )
        if precision is not None:
            metrics_record(
                version=version,
                metrics={"macro_precision": precision, "coverage": coverage},
                evaluation_dataset="unit holdout",
            )
        for spec in variants or []:
            Variant.objects.create(
                version=version,
                name=spec.get("name", f"onnx-{spec.get('precision', 'fp32')}"),
                format="onnx",
                precision=spec.get("precision", "fp32"),
                runtime=spec.get("runtime", "onnxruntime"),
                hardware=spec.get("hardware", "cpu"),
                status=spec.get("status", VariantStatus.SERVED),
                latency_p50_ms=spec.get("p95", 10.0) / 1.2,
                latency_p95_ms=spec.get("p95", 10.0),
            )
        model_version_finish(version=version)
        model.refresh_from_db()
        return model

    return make


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT (MiniLM's architecture and tokenizer), made once."""
    from runners.testing import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def tiny_encoder(make_model: Callable[..., Any], tiny_bert_dir: Path, make_team: Callable[..., Any]) -> Any:
    """A ready ``sentence-encoder`` version whose files are the tiny BERT."""
    from catalog.models import Domain, Modality, ResultKind, Visibility
    from catalog.services.registry import (
        artifact_files_store,
        model_version_create,
        model_version_finish,
        registered_model_create,
    )

    model = registered_model_create(
        name="Tiny encoder",
        team=make_team("Team A"),
        visibility=Visibility.INTERNAL,
        modality=Modality.objects.get(path="text/natural-language/english"),
        result_kind=ResultKind.objects.get(path="embedding/sentence"),
        domain=Domain.objects.get(path="general/wikipedia"),
    )
    names = sorted(p.name for p in tiny_bert_dir.iterdir() if p.is_file())
    version = model_version_create(
        registered_model=model,
        family="sentence-encoder",
        files=artifact_files_store(directory=tiny_bert_dir, names=names),
    )
    return model_version_finish(version=version)


def ticket_csv(n: int = 120, seed: int = 3) -> bytes:
    import csv
    import io

    from runners.synthetic_text import support_tickets

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    writer.writerows(support_tickets(n, seed=seed))
    return out.getvalue().encode()


@pytest.fixture
def tickets_csv() -> bytes:
    return ticket_csv()
