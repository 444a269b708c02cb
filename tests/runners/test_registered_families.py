"""Hugging Face encoders registered as folders (BERT, DistilBERT, RoBERTa):
exported to ONNX with parity like the built-in families, and fine-tunable
(a new head on their encoder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runners import compile as C
from runners.families import family_detect, sequence_classifier, text_classifier
from tests.registration_folders import LABELS, make_hf_folder

SPECS = tuple(s for s in C.SPECS if s.name in ("onnx-fp32", "onnx-fp32-optimized", "onnx-int8"))


@pytest.mark.parametrize("kind", ["bert", "distilbert", "roberta"])
def test_sequence_classifier_exports_with_parity(kind: str, tmp_path: Path) -> None:
    folder = make_hf_folder(tmp_path / kind, kind=kind)
    import json

    config = json.loads((folder / "config.json").read_text())
    assert family_detect(config, {p.name for p in folder.iterdir()}).family == "sequence-classifier"
    results = {
        r.spec.name: r
        for r in C.compile_version(
            family="sequence-classifier",
            model_dir=folder,
            work=tmp_path / "work",
            eval_inputs=C.EvalInputs(texts=[f"ticket number {i} about billing" for i in range(24)]),
            manifest_base={"model": kind, "labels": LABELS},
            specs=SPECS,
        )
    }
    fp32 = results["onnx-fp32"]
    assert fp32.status == "served", fp32.reason
    assert fp32.parity is not None
    assert fp32.parity.max_abs_diff <= C.FP32_MAX_ABS_DIFF
    assert fp32.bundle_path is not None
    assert fp32.bundle_path.exists()
    # The ONNX probabilities are the torch model's, label columns in id2label order.
    probs = sequence_classifier.predict(folder, ["a billing question"])
    assert probs.shape == (1, len(LABELS))
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    for r in results.values():
        assert r.status in ("served", "rejected"), (r.spec.name, r.reason)


@pytest.mark.parametrize("kind", ["distilbert", "roberta"])
def test_encoder_folders_fine_tune_a_new_head(kind: str, tmp_path: Path) -> None:
    folder = make_hf_folder(tmp_path / kind, kind=kind, task="classifier")
    texts = [f"invoice payment problem {i}" for i in range(20)] + [f"site is down again {i}" for i in range(20)]
    labels = ["billing"] * 20 + ["outage"] * 20
    result = text_classifier.fit(
        folder,
        texts,
        labels,
        tmp_path / "out",
        text_classifier.FitParams(epochs=2, unfreeze_layers=1, batch_size=8),
    )
    assert result.labels == ["billing", "outage"]
    # unfreeze_layers=1 trained the encoder's last block (DistilBERT names it differently).
    from safetensors.numpy import load_file
    from transformers import AutoModel

    assert len(text_classifier.encoder_layers(AutoModel.from_pretrained(str(folder)))) == 2
    base, tuned = load_file(str(folder / "model.safetensors")), load_file(str(tmp_path / "out" / "model.safetensors"))
    # Tensors of the base encoder (prefixed "bert."/"roberta."/… there) that training changed.
    pairs = {k: next((b for b in base if b.endswith("." + k) or b == k), None) for k in tuned}
    changed = [k for k, b in pairs.items() if b is not None and not np.array_equal(tuned[k], base[b])]
    assert changed
    assert all(".1." in k for k in changed)  # only the last of the two blocks
    assert (tmp_path / "out" / "head.safetensors").exists()
    probs = text_classifier.predict(tmp_path / "out", ["payment failed"])
    assert probs.shape == (1, 2)
