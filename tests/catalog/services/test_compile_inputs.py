"""What a compile judges and calibrates int8 on, and how latencies are recorded."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from catalog.services import compile as compile_service
from runners.splits import stratified_split


def test_parity_uses_the_whole_held_out_split_and_int8_calibrates_on_the_rest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from catalog.services import datasets

    targets = [i % 5 for i in range(3000)]
    data = SimpleNamespace(texts=[f"text {i}" for i in range(3000)], targets=targets)
    monkeypatch.setattr(datasets, "dataset_load", lambda *, version: data)
    version: Any = SimpleNamespace(
        family="text-classifier", dataset_version=object(), hyperparameters={"holdout": 0.2, "seed": 3}
    )
    inputs = compile_service._eval_inputs(version, tmp_path)
    train, held = stratified_split(targets, 0.2, 3)
    assert len(held) == 600
    assert inputs.texts == [f"text {i}" for i in held]  # all of it (was 256)
    assert inputs.targets == [targets[i] for i in held]
    assert inputs.calibration_texts == [f"text {i}" for i in train]
    assert not set(inputs.calibration_texts) & set(inputs.texts)  # never calibrated on what judges it

    big = SimpleNamespace(texts=[f"t {i}" for i in range(20000)], targets=[i % 5 for i in range(20000)])
    monkeypatch.setattr(datasets, "dataset_load", lambda *, version: big)
    assert len(compile_service._eval_inputs(version, tmp_path).texts) == compile_service.PARITY_MAX_SAMPLES


@pytest.mark.django_db
def test_a_compiled_variant_records_padded_and_real_length_latencies(tiny_encoder: Any) -> None:
    from catalog.models import VariantStatus

    variants = {v.name: v for v in compile_service.version_compile(version_id=tiny_encoder.pk)}
    fp32 = variants["onnx-fp32"]
    assert fp32.status == VariantStatus.SERVED
    assert set(fp32.latency) == {"1", "32", "1-real", "32-real"}
    assert fp32.latency["1"]["lengths"] == "fixed"
    assert fp32.latency["1"]["sequence_length"] == 64
    assert fp32.latency["1-real"]["sequence_length"] < 64
    assert fp32.latency_p95_ms == fp32.latency["1"]["p95_ms"]  # resolve ranks by the padded batch-1 figure
    assert fp32.parity["samples"] > 0
