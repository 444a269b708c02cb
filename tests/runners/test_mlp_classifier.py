from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runners.evaluation import classification_report
from runners.families import mlp_classifier
from runners.safetensors_info import parameter_count, safetensors_header
from runners.splits import stratified_split


def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0], [4, 4, 0], [0, 4, 4]], dtype=np.float32)
    y = rng.integers(0, 3, 300)
    return centres[y] + rng.normal(0, 0.6, (300, 3)).astype(np.float32), y


def test_fit_learns_saves_safetensors_and_is_deterministic(tmp_path: Path) -> None:
    x, y = blobs()
    train, held = stratified_split(y, 0.25, seed=0)
    seen: list[float] = []
    a = mlp_classifier.fit(
        x[train],
        y[train],
        ["r", "g", "b"],
        tmp_path / "a",
        {"epochs": 15, "seed": 3},
        progress=lambda p: seen.append(p.loss),
    )
    b = mlp_classifier.fit(x[train], y[train], ["r", "g", "b"], tmp_path / "b", {"epochs": 15, "seed": 3})
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["config.json", "model.safetensors"]
    assert parameter_count(tmp_path / "a" / "model.safetensors") == a.parameter_count
    assert safetensors_header(tmp_path / "a" / "model.safetensors")["__metadata__"]["family"] == "mlp-classifier"
    assert json.loads((tmp_path / "a" / "config.json").read_text())["labels"] == ["r", "g", "b"]
    assert seen
    assert seen[-1] < seen[0]
    assert b.loss_history == a.loss_history
    report = classification_report(y[held], mlp_classifier.predict(tmp_path / "a", x[held]), ["r", "g", "b"])
    assert report.macro_precision > 0.95


def test_stratified_split_keeps_every_class_on_both_sides() -> None:
    y = np.array([0] * 10 + [1] * 2 + [2] * 30)
    train, held = stratified_split(y, 0.2, seed=1)
    assert set(y[train]) == set(y[held]) == {0, 1, 2}
    assert len(set(train) & set(held)) == 0
    assert len(train) + len(held) == len(y)
    again = stratified_split(y, 0.2, seed=1)
    assert (again[1] == held).all()
