from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runners.families import text_classifier as tc
from runners.safetensors_info import safetensors_header
from runners.synthetic_text import support_tickets


@pytest.fixture(scope="module")
def data() -> tuple[list[str], list[str]]:
    rows = support_tickets(160, seed=1, ambiguous_share=0.0)
    return [t for t, _ in rows], [label for _, label in rows]


def test_head_only_fit_is_deterministic_and_saves_safetensors(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]]
) -> None:
    texts, labels = data
    params = tc.FitParams(epochs=15, learning_rate=0.05, seed=4)
    seen: list[tc.Progress] = []
    a = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "a", params, progress=seen.append)
    b = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "b", params)
    assert (tmp_path / "a" / tc.HEAD_FILE).read_bytes() == (tmp_path / "b" / tc.HEAD_FILE).read_bytes()
    assert a.report.as_dict() == b.report.as_dict()
    assert {f for f in a.files if f.endswith((".bin", ".pt", ".pkl", ".pickle"))} == set()
    assert {"model.safetensors", "head.safetensors", "classifier.json", "config.json"} <= set(a.files)
    assert safetensors_header(tmp_path / "a" / tc.HEAD_FILE)["weight"]["shape"] == [4, 32]
    assert a.labels == ["account", "billing", "shipping", "technical"]
    assert a.train_rows + a.holdout_rows == 160
    assert {p.phase for p in seen} == {"features", "train"}
    losses = [loss for _, loss in a.loss_history]
    assert losses[-1] < losses[0]
    # The head learns something even on a random tiny encoder.
    assert a.report.accuracy > 0.4
    probs = tc.predict(tmp_path / "a", texts[:5])
    assert probs.shape == (5, 4)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_cached_features_give_the_naive_loops_result(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]]
) -> None:
    texts, labels = data
    params = tc.FitParams(epochs=6, learning_rate=0.05)
    cached = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "c", params)
    naive = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "n", params, cache_features=False)
    assert cached.report.confusion == naive.report.confusion
    assert cached.loss_history[-1][1] == pytest.approx(naive.loss_history[-1][1], rel=1e-3)


def test_unfreezing_the_last_layer_trains_the_encoder(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]]
) -> None:
    from safetensors.numpy import load_file

    texts, labels = data
    tc.fit(
        tiny_bert_dir,
        texts,
        labels,
        tmp_path / "u",
        tc.FitParams(epochs=2, unfreeze_layers=1, encoder_learning_rate=1e-3),
    )
    before, after = (
        load_file(str(tiny_bert_dir / "model.safetensors")),
        load_file(str(tmp_path / "u" / "model.safetensors")),
    )
    last = next(k for k in after if "layer.1." in k and k.endswith("query.weight"))
    first = next(k for k in after if "layer.0." in k and k.endswith("query.weight"))
    assert not np.array_equal(before[last], after[last])
    assert np.array_equal(before[first], after[first])


def test_should_stop_cancels_at_the_next_step(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]]
) -> None:
    texts, labels = data
    steps: list[int] = []
    with pytest.raises(tc.Cancelled):
        tc.fit(
            tiny_bert_dir,
            texts,
            labels,
            tmp_path / "x",
            tc.FitParams(epochs=50),
            progress=lambda p: steps.append(p.step) if p.phase == "train" else None,
            should_stop=lambda: len(steps) >= 3,
        )
    assert len(steps) == 3
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 0}, "epochs must be between"),
        ({"lr": 1}, "unknown hyperparameter"),
        ({"batch_size": "many"}, "batch_size must be a number"),
        ({"epochs": 2.5}, "whole number"),
    ],
)
def test_hyperparameters_are_validated(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tc.FitParams.from_dict(values)


@pytest.mark.real_weights
def test_real_minilm_head_only_learns_the_tickets(tmp_path: Path) -> None:
    from runners.testing import minilm_dir

    rows = support_tickets(400, seed=7)
    result = tc.fit(
        minilm_dir(),
        [t for t, _ in rows],
        [label for _, label in rows],
        tmp_path / "m",
        tc.FitParams(epochs=30, learning_rate=0.01),
    )
    assert result.report.macro_precision > 0.85
    assert result.parameter_count > 22_000_000
