"""POST /api/v1/models/{slug}/predict and the model page's "try it" endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from catalog.models import Visibility

pytestmark = pytest.mark.django_db


def _token_client(user: Any) -> Client:
    from catalog.services.tokens import api_token_create

    return Client(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user, name='t')}")


def _predict(client: Client, slug: str, body: dict[str, Any]) -> Any:
    return client.post(f"/api/v1/models/{slug}/predict", body, content_type="application/json")


def test_predict_answers_each_input_with_every_label(
    make_text_classifier: Callable[..., Any], tiny_classifier_build: Any
) -> None:
    import numpy as np
    import onnxruntime as ort
    from transformers import AutoTokenizer

    model = make_text_classifier("Ticket router")
    texts = ["I was charged twice on my invoice", "my parcel never arrived"]
    response = _predict(Client(), model.slug, {"inputs": texts})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["variant"] == "onnx-fp32"
    assert body["version"] == 1
    assert body["latency_ms"] > 0
    assert body["model_url"].startswith("http://testserver/models/")
    assert len(body["predictions"]) == 2
    # The same graph run directly (tokenised by transformers) gives the same answer.
    tok = AutoTokenizer.from_pretrained(str(tiny_classifier_build.model_dir))
    enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="np")
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, tarfile.open(tiny_classifier_build.bundle) as tar:
        tar.extract("model.onnx", tmp)
        session = ort.InferenceSession(f"{tmp}/model.onnx", providers=["CPUExecutionProvider"])
        probs = session.run(None, {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})[0]
    labels = tiny_classifier_build.labels
    for row, pred in zip(probs, body["predictions"], strict=True):
        assert set(pred["scores"]) == set(labels)
        assert pred["label"] == labels[int(np.argmax(row))]
        assert pred["score"] == pytest.approx(float(row.max()), abs=1e-4)
        assert sum(pred["scores"].values()) == pytest.approx(1.0, abs=1e-3)


def test_predict_validates_inputs_against_the_schema(make_text_classifier: Callable[..., Any], settings: Any) -> None:
    settings.PREDICT_MAX_INPUTS = 3
    model = make_text_classifier("Limited", input_schema={"type": "text", "max_tokens": 64, "max_chars": 20})
    client = Client()
    too_many = _predict(client, model.slug, {"inputs": ["a", "b", "c", "d"]})
    assert too_many.status_code == 422  # well formed, beyond this version's limits
    assert too_many.json()["code"] == "unprocessable"
    assert "At most 3 inputs" in too_many.json()["errors"]["inputs"][0]
    too_long = _predict(client, model.slug, {"inputs": ["x" * 21]})
    assert too_long.status_code == 422
    assert "limit is 20" in too_long.json()["detail"]
    assert _predict(client, model.slug, {"inputs": []}).status_code == 400
    assert _predict(client, model.slug, {"inputs": "not a list"}).status_code == 400
    assert _predict(client, model.slug, {"inputs": ["ok"], "version": 1, "alias": "production"}).status_code == 422
    missing_version = _predict(client, model.slug, {"inputs": ["ok"], "version": 7})
    assert missing_version.status_code == 422
    assert "version" in missing_version.json()["errors"]
    assert _predict(client, model.slug, {"inputs": ["exactly twenty chars"]}).status_code == 200


def test_a_model_without_a_served_variant_is_a_409(make_text_classifier: Callable[..., Any]) -> None:
    model = make_text_classifier("Uncompiled", variant=False)
    response = _predict(Client(), model.slug, {"inputs": ["hello"]})
    assert response.status_code == 409
    assert response.json()["code"] == "not_servable"
    assert "compile" in response.json()["detail"]


def test_a_private_model_is_a_missing_one_to_other_teams(
    make_text_classifier: Callable[..., Any], make_team: Callable[..., Any], make_user: Callable[..., Any]
) -> None:
    team_a, team_b = make_team("Team A"), make_team("Team B")
    model = make_text_classifier("Secret router", team=team_a, visibility=Visibility.PRIVATE)
    outsider = _token_client(make_user("bob", team_b))
    hidden = _predict(outsider, model.slug, {"inputs": ["hello"]})
    missing = _predict(outsider, "no-such-model", {"inputs": ["hello"]})
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content
    assert _predict(Client(), model.slug, {"inputs": ["hello"]}).status_code == 404
    insider = _token_client(make_user("alice", team_a))
    assert _predict(insider, model.slug, {"inputs": ["hello"]}).status_code == 200
    # The page's endpoint too.
    page_client = Client()
    page_client.force_login(make_user("carol", team_b))
    assert page_client.post(f"/models/{model.slug}/predict/", {"text": "hello"}).status_code == 404


def test_predict_is_rate_limited_per_token(
    make_text_classifier: Callable[..., Any], make_user: Callable[..., Any], settings: Any
) -> None:
    from django.core.cache import cache

    cache.clear()
    settings.API_THROTTLE_PREDICT = "2/minute"
    model = make_text_classifier("Busy")
    first, second = _token_client(make_user("u1")), _token_client(make_user("u2"))
    assert [_predict(first, model.slug, {"inputs": ["hi"]}).status_code for _ in range(3)] == [200, 200, 429]
    limited = _predict(first, model.slug, {"inputs": ["hi"]})
    assert limited.json()["code"] == "throttled"
    assert int(limited["Retry-After"]) >= 1
    assert _predict(second, model.slug, {"inputs": ["hi"]}).status_code == 200  # another token, its own budget


def test_session_pool_is_bounded_lru(make_text_classifier: Callable[..., Any], settings: Any) -> None:
    from catalog.services.predict import SessionPool

    pool = SessionPool(2)
    loads: list[str] = []

    def loader(key: str) -> Callable[[], str]:
        return lambda: loads.append(key) or key  # type: ignore[func-returns-value]

    for key in ("a", "b", "a", "c", "a", "b"):
        pool.get(key, loader(key))
    # "b" was dropped when "c" came (a was used more recently), and loaded again.
    assert loads == ["a", "b", "c", "b"]
    assert len(pool) == 2
    assert pool.keys() == ["a", "b"]


def test_the_try_it_endpoint_renders_bars(make_text_classifier: Callable[..., Any]) -> None:
    model = make_text_classifier("Router page")
    page = Client().get(f"/models/{model.slug}/")
    assert b'id="try-it-form"' in page.content
    response = Client().post(
        f"/models/{model.slug}/predict/", {"text": "refund my invoice", "version": "1"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("<meter") == len(model.latest_version.labels)
    assert "<html" not in html  # the htmx answer is the fragment only
    empty = Client().post(f"/models/{model.slug}/predict/", {"text": "  "}, HTTP_HX_REQUEST="true")
    assert empty.status_code == 400
    assert "Type a sentence" in empty.content.decode()


def test_an_encoder_answers_with_the_nearest_sample_sentence(
    tiny_encoder: Any, tiny_bert_dir: Any, tmp_path: Any
) -> None:
    from catalog.models import Variant, VariantStatus
    from catalog.services.predict import SAMPLE_SENTENCES
    from catalog.storage import artifact_put_path
    from runners import compile as C

    spec = next(s for s in C.SPECS if s.name == "onnx-fp32")
    compiled = C.compile_version(
        family="sentence-encoder",
        model_dir=tiny_bert_dir,
        work=tmp_path,
        eval_inputs=C.EvalInputs(texts=list(SAMPLE_SENTENCES)),
        manifest_base={},
        specs=(spec,),
    )
    assert compiled[0].bundle_path is not None, compiled[0].reason
    stored = artifact_put_path(compiled[0].bundle_path)
    Variant.objects.create(
        version=tiny_encoder,
        name="onnx-fp32",
        format="onnx",
        precision="fp32",
        runtime="onnxruntime",
        hardware="cpu",
        status=VariantStatus.SERVED,
        sha256=stored.sha256,
        size=stored.size,
        latency_p95_ms=1.0,
    )
    slug = tiny_encoder.registered_model.slug
    response = _predict(Client(), slug, {"inputs": [SAMPLE_SENTENCES[2]]})
    assert response.status_code == 200, response.content
    pred = response.json()["predictions"][0]
    assert pred["label"] == SAMPLE_SENTENCES[2]  # a sentence is nearest to itself
    assert pred["score"] == pytest.approx(1.0, abs=1e-3)
    assert set(pred["scores"]) == set(SAMPLE_SENTENCES)
