from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from runners import compile as C
from runners.families import text_classifier as tc
from runners.synthetic_text import support_tickets


@pytest.fixture(scope="module")
def classifier(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[int]]:
    rows = support_tickets(160, seed=2, ambiguous_share=0.0)
    texts, labels = [t for t, _ in rows], [label for _, label in rows]
    out = tmp_path_factory.mktemp("clf")
    result = tc.fit(tiny_bert_dir, texts, labels, out, tc.FitParams(epochs=60, learning_rate=0.05))
    return out, texts[:64], [result.labels.index(label) for label in labels[:64]]


CALIBRATION = [t for t, _ in support_tickets(40, seed=9, ambiguous_share=0.0)]


def test_compile_builds_checks_times_and_bundles(classifier: tuple[Path, list[str], list[int]], tmp_path: Path) -> None:
    model_dir, texts, targets = classifier
    results = {
        r.spec.name: r
        for r in C.compile_version(
            family="text-classifier",
            model_dir=model_dir,
            work=tmp_path,
            eval_inputs=C.EvalInputs(texts=texts, targets=targets, calibration_texts=CALIBRATION),
            manifest_base={"model": "m", "labels": ["a"]},
        )
    }
    assert results["onnx-fp16-cuda"].status == "skipped"
    for name in ("onnx-fp32", "onnx-fp32-optimized", "onnx-int8", "onnx-int8-optimized"):
        r = results[name]
        # fp32 must pass; int8 is judged by parity (served or rejected, never failed).
        assert r.status == "served" if "fp32" in name else r.status in ("served", "rejected"), (name, r.reason)
        assert r.parity is not None
        assert r.parity.samples == 64
        assert r.parity.top1_agreement is not None
        assert r.parity.flips == round((1 - r.parity.top1_agreement) * 64)
        assert r.parity.allowed_flips == 0  # 1% of 64 inputs: not one flip
        # Padded to 64 tokens, and the held-out inputs at their own lengths.
        assert {(lat.batch, lat.lengths) for lat in r.latency} == {
            (1, "fixed"),
            (32, "fixed"),
            (1, "real"),
            (32, "real"),
        }
        assert all(lat.p50_ms > 0 and lat.p95_ms >= lat.p50_ms for lat in r.latency)
        real = next(lat for lat in r.latency if lat.lengths == "real" and lat.batch == 1)
        assert real.sequence_length is not None
        assert 3 <= real.sequence_length < 64
    assert results["onnx-fp32"].parity.max_abs_diff <= 1e-3
    int8 = results["onnx-int8"]
    if int8.quantization["embeddings"] == "int8":
        assert int8.model_size < results["onnx-fp32"].model_size / 2
    else:  # the embedding tables (most of a tiny model) stayed fp32; the projections are int8
        import onnx

        graph = onnx.load(str(tmp_path / "onnx-int8.onnx")).graph
        assert sum(len(i.raw_data) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8) > 0
    assert "avx2" in results["onnx-fp32"].fingerprint["isa"] or results["onnx-fp32"].fingerprint["machine"] != "x86_64"

    bundle = results["onnx-int8"].bundle_path
    with tarfile.open(bundle) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {"manifest.json", "model.onnx", "tokenizer.json"} <= names
    assert manifest["precision"] == "int8"
    assert manifest["opset"] == C.OPSET
    assert manifest["quantization"]["weights"] == "int8 per channel"
    q = manifest["quantization"]
    assert q["calibration"] == {"source": "training inputs", "rows": len(CALIBRATION)}
    assert q["plan"] == q["tried"][-1]["plan"]
    assert q["weight_nodes"]["int8"] + q["weight_nodes"]["fp32"] == 2 * 6  # 2 layers: Q, K, V, out, FFN in/out
    assert len(q["fp32_nodes"]) == q["weight_nodes"]["fp32"]
    assert manifest["parity"]["samples"] == 64
    # The machine's options, with the intra-op thread count the compile measured fastest for this variant.
    recorded = manifest["session_options"]
    defaults = C.session_options()
    assert {k: v for k, v in recorded.items() if k not in ("intra_op_num_threads", "threads_measured")} == {
        k: v for k, v in defaults.items() if k != "intra_op_num_threads"
    }
    assert recorded == results["onnx-int8"].session_options
    if defaults["intra_op_num_threads"] > 1:
        measured = recorded["threads_measured"]
        assert set(measured) == {str(defaults["intra_op_num_threads"]), "1", "ratio"}
        assert str(recorded["intra_op_num_threads"]) in measured
    else:
        assert recorded == defaults
    assert {(lat["batch"], lat["lengths"]) for lat in manifest["latency"]} >= {(1, "real"), (32, "real")}
    assert set(manifest["files"]) == names - {"manifest.json"}
    assert manifest["files"]["model.onnx"]["sha256"] == C.sha256_file(tmp_path / "onnx-int8.onnx")

    # Dynamic axes: any batch size and sequence length runs.
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "onnx-fp32.onnx"))
    for batch, seq in ((1, 5), (3, 40)):
        ids = np.full((batch, seq), 1037, dtype=np.int64)
        out = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
        assert out.shape == (batch, 4)


def test_parity_follows_each_input_to_its_label(classifier: tuple[Path, list[str], list[int]], tmp_path: Path) -> None:
    """Parity runs the inputs sorted by length; the labels must follow them."""
    from runners.evaluation import classification_report

    model_dir, texts, targets = classifier
    (fp32,) = C.compile_version(
        family="text-classifier",
        model_dir=model_dir,
        work=tmp_path,
        eval_inputs=C.EvalInputs(texts=texts, targets=targets),
        manifest_base={},
        specs=C.SPECS[:1],
    )
    probabilities = tc.predict(model_dir, texts)
    expected = classification_report(targets, probabilities, [str(i) for i in range(probabilities.shape[1])])
    assert fp32.parity is not None
    assert fp32.parity.reference_macro_precision == pytest.approx(expected.macro_precision)
    assert fp32.parity.macro_precision == pytest.approx(expected.macro_precision)


def test_a_broken_variant_is_rejected_by_parity(classifier: tuple[Path, list[str], list[int]], tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model_dir, texts, targets = classifier

    def corrupt(spec: C.VariantSpec, path: Path) -> None:
        if spec.name != "onnx-fp32":
            return
        model = onnx.load(str(path))
        for init in model.graph.initializer:
            if "head" in init.name and init.name.endswith("bias"):
                init.CopyFrom(
                    numpy_helper.from_array(
                        (numpy_helper.to_array(init) + 5.0 * np.arange(4)).astype(np.float32), init.name
                    )
                )
        onnx.save(model, str(path))

    results = {
        r.spec.name: r
        for r in C.compile_version(
            family="text-classifier",
            model_dir=model_dir,
            work=tmp_path,
            eval_inputs=C.EvalInputs(texts=texts, targets=targets),
            manifest_base={},
            specs=C.SPECS[:1],
            corrupt=corrupt,
        )
    }
    broken = results["onnx-fp32"]
    assert broken.status == "rejected", broken.reason
    assert "max |Δ|" in broken.reason
    assert broken.parity is not None
    assert broken.parity.max_abs_diff > 1e-3


def test_an_mlp_exports_with_its_standardisation(tmp_path: Path) -> None:
    from runners.families import mlp_classifier

    rng = np.random.default_rng(0)
    x = rng.normal(5, 3, (200, 6)).astype(np.float32)
    y = (x[:, 0] > 5).astype(np.int64)
    mlp_classifier.fit(x, y, ["low", "high"], tmp_path / "m", {"epochs": 5})
    results = {
        r.spec.name: r
        for r in C.compile_version(
            family="mlp-classifier",
            model_dir=tmp_path / "m",
            work=tmp_path / "w",
            eval_inputs=C.EvalInputs(features=x[:64]),
            manifest_base={},
        )
    }
    assert results["onnx-fp32"].status == "served"
    assert results["onnx-fp32"].parity.max_abs_diff <= 1e-5  # type: ignore[union-attr]
    assert results["onnx-fp32-optimized"].status == "skipped"


@pytest.mark.real_weights
def test_real_minilm_encoder_exports_within_fp32_parity(tmp_path: Path) -> None:
    from runners.testing import minilm_dir

    results = C.compile_version(
        family="sentence-encoder",
        model_dir=minilm_dir(),
        work=tmp_path,
        eval_inputs=C.EvalInputs(texts=[t for t, _ in support_tickets(64, seed=5)]),
        manifest_base={},
        specs=C.SPECS[:1],
    )
    assert results[0].status == "served", results[0].reason
    assert results[0].parity.max_abs_diff <= 1e-3  # type: ignore[union-attr]


def test_fp16_conversion_halves_the_weights_and_keeps_float32_io(
    classifier: tuple[Path, list[str], list[int]], tmp_path: Path
) -> None:
    import onnx

    model_dir, _, _ = classifier
    C.export_onnx("text-classifier", model_dir, tmp_path / "fp32.onnx")
    C.convert_fp16(tmp_path / "fp32.onnx", tmp_path / "fp16.onnx")
    model = onnx.load(str(tmp_path / "fp16.onnx"))
    big = [i for i in model.graph.initializer if np.prod(i.dims) > 1000]
    assert big
    assert all(i.data_type == onnx.TensorProto.FLOAT16 for i in big)
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert (tmp_path / "fp16.onnx").stat().st_size < (tmp_path / "fp32.onnx").stat().st_size * 0.6


def test_speed_score_is_the_geometric_mean_of_batch_1_and_batch_32() -> None:
    lat = [
        C.Latency(batch=1, sequence_length=64, p50_ms=4.0, p95_ms=9.0, runs=30),
        C.Latency(batch=32, sequence_length=64, p50_ms=100.0, p95_ms=120.0, runs=10),
        C.Latency(batch=1, sequence_length=11, p50_ms=1.0, p95_ms=2.0, runs=30, lengths="real"),
    ]
    recorded = {C.latency_key(x): {"p50_ms": x.p50_ms, "p95_ms": x.p95_ms} for x in lat}
    assert set(recorded) == {"1", "32", "1-real"}
    assert C.speed_score(recorded) == pytest.approx(20.0)  # sqrt(4 * 100): p50s of the padded shapes only
    assert C.speed_score({"1": recorded["1"]}) is None
    assert C.speed_score({"1": {"p50_ms": 0.0}, "32": {"p50_ms": 3.0}}) is None
    assert C.speed_score(None) is None
