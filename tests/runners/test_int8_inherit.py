"""A head-only fine-tune's int8 variants reuse its base's int8 plan and
rewrite, so that the quantised encoder weights are the base's bytes (stored
once); the plan search takes over when that plan fails parity."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from runners import compile as C
from runners.families import text_classifier as tc
from runners.synthetic_text import support_tickets

# Smoothed and outlier-split, with one sensitivity-picked fp32 node: every
# part of a plan that depends on calibration.
BASE_PLAN = C.QuantPlan("int8-outliers-1-fp32", smoothing=0.75, outlier_channels=1, embeddings=False, keep_fp32=1)


def _pass(candidate: Path) -> C.Parity:
    return C.Parity(max_abs_diff=0.0, top1_agreement=1.0, samples=1, passed=True)


def _batches(model_dir: Path, seed: int) -> list[dict[str, np.ndarray]]:
    texts = [t for t, _ in support_tickets(48, seed=seed, ambiguous_share=0.0)]
    return C.length_batches(C.tokenize(model_dir, texts, 64), 16)


def _int8_tensors(path: Path) -> dict[str, str]:
    """sha256 → name of every int8 initializer (the quantised weights)."""
    import onnx

    graph = onnx.load(str(path)).graph
    return {
        hashlib.sha256(i.raw_data).hexdigest(): i.name
        for i in graph.initializer
        if i.data_type == onnx.TensorProto.INT8
    }


@pytest.fixture(scope="module")
def head_only(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text classifier trained on the frozen tiny encoder (head only)."""
    rows = support_tickets(120, seed=4, ambiguous_share=0.0)
    out = tmp_path_factory.mktemp("head-only")
    tc.fit(
        tiny_bert_dir,
        [t for t, _ in rows],
        [label for _, label in rows],
        out,
        tc.FitParams(recipe="manual", unfreeze_layers=0, epochs=5, learning_rate=0.05),
    )
    return out


@pytest.fixture(scope="module")
def base_bundle(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """The base encoder's int8 graph built with BASE_PLAN on its own
    calibration inputs, in a bundle with its manifest."""
    work = tmp_path_factory.mktemp("base")
    C.export_onnx("sentence-encoder", tiny_bert_dir, work / "fp32.onnx")
    _, record = C.build_int8(
        work / "fp32.onnx",
        work / "int8.onnx",
        work=work,
        calibration=_batches(tiny_bert_dir, seed=1),
        check=_pass,
        plans=(BASE_PLAN,),
    )
    assert record["plan"] == BASE_PLAN.name
    assert len(record["fp32_nodes"]) == 1
    bundle = C.write_bundle(
        work / "onnx-int8.tar", {"model.onnx": work / "int8.onnx"}, {"variant": "onnx-int8", "quantization": record}
    )
    return bundle, work / "int8.onnx", record


def test_the_encoder_digest_tells_a_head_only_fine_tune_from_a_tuned_encoder(
    tiny_bert_dir: Path, head_only: Path, tmp_path: Path
) -> None:
    from safetensors.numpy import load_file, save_file

    base = C.encoder_digest(tiny_bert_dir)
    assert base is not None
    assert C.encoder_digest(head_only) == base  # re-saved by the fine-tune, same tensors
    tensors = load_file(str(tiny_bert_dir / "model.safetensors"))
    name = next(n for n in tensors if "layer.1" in n and n.endswith("weight"))
    tensors[name] = tensors[name] + np.float32(1e-3)  # one unfrozen layer moved
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    save_file(tensors, str(tuned / "model.safetensors"))
    assert C.encoder_digest(tuned) != base
    # An integer buffer that older checkpoints saved (BERT's position_ids) is not a weight.
    tensors = {**load_file(str(tiny_bert_dir / "model.safetensors")), "embeddings.position_ids": np.arange(512)[None]}
    save_file(tensors, str(tuned / "model.safetensors"))
    assert C.encoder_digest(tuned) == base
    assert C.encoder_digest(tmp_path) is None  # no model.safetensors


def test_an_inherited_plan_rebuilds_the_base_int8_encoder_byte_for_byte(
    head_only: Path, base_bundle: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    bundle, base_int8, base_record = base_bundle
    C.export_onnx("text-classifier", head_only, tmp_path / "fp32.onnx")
    # The fine-tune's own calibration inputs: not the base's.
    calibration = _batches(head_only, seed=7)
    inherit = C.InheritedPlan.read(bundle, "tiny v1")
    assert inherit is not None
    assert inherit.plan.smoothing == 0.75
    assert inherit.plan.outlier_channels == 1
    assert inherit.fp32_nodes == base_record["fp32_nodes"]
    assert inherit.rewrite.smoothing  # the rewrite constants are read back from the graph

    parity, record = C.build_int8(
        tmp_path / "fp32.onnx",
        tmp_path / "inherited.onnx",
        work=tmp_path,
        calibration=calibration,
        check=_pass,
        inherit=inherit,
    )
    assert parity.passed
    assert record["plan"] == f"inherited-{BASE_PLAN.name}"
    assert record["inherited_from"]["base"] == "tiny v1"
    assert record["inherited_from"]["plan"] == BASE_PLAN.name
    assert record["inherited_from"]["bundle_sha256"] == C.sha256_file(bundle)
    assert record["inherited_from"]["activations"] >= len(inherit.rewrite.smoothing)
    assert record["fp32_nodes"] == base_record["fp32_nodes"]
    assert [t["plan"] for t in record["tried"]] == [record["plan"]]

    base_tensors = _int8_tensors(base_int8)
    inherited = _int8_tensors(tmp_path / "inherited.onnx")
    # Every quantised encoder weight of the base is in the fine-tune's graph,
    # byte for byte; the only other int8 tensor is the new head's.
    assert set(base_tensors) <= set(inherited)
    assert len(inherited) == len(base_tensors) + 1

    # The same plan calibrated on the fine-tune's own inputs moves the smoothed
    # weights: without the inheritance the int8 encoder is new bytes.
    C.build_int8(
        tmp_path / "fp32.onnx",
        tmp_path / "own.onnx",
        work=tmp_path,
        calibration=calibration,
        check=_pass,
        plans=(BASE_PLAN,),
    )
    own = _int8_tensors(tmp_path / "own.onnx")
    assert len(set(base_tensors) - set(own)) >= len(base_tensors) // 2


def test_the_plan_search_takes_over_when_the_inherited_plan_fails(
    head_only: Path, base_bundle: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    bundle, _, _ = base_bundle
    C.export_onnx("text-classifier", head_only, tmp_path / "fp32.onnx")
    inherit = C.InheritedPlan.read(bundle, "tiny v1")
    assert inherit is not None

    def only_own_plans(candidate: Path) -> C.Parity:
        # Fails every graph that holds the base's smoothing constants.
        import onnx

        names = {i.name for i in onnx.load(str(candidate)).graph.initializer}
        passed = not any(n.endswith("/smooth_scale") for n in names)
        return C.Parity(max_abs_diff=0.0, top1_agreement=1.0, samples=1, passed=passed)

    parity, record = C.build_int8(
        tmp_path / "fp32.onnx",
        tmp_path / "q.onnx",
        work=tmp_path,
        calibration=_batches(head_only, seed=7),
        check=only_own_plans,
        inherit=inherit,
    )
    assert parity.passed
    tried = [t["plan"] for t in record["tried"]]
    assert tried == [p.name for p in inherit.plans()] + ["int8"]
    assert record["plan"] == "int8"
    assert record["inherited_from"] is None


def test_compile_version_inherits_the_base_plan_for_a_head_only_fine_tune(
    tiny_bert_dir: Path, head_only: Path, base_bundle: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    bundle, base_int8, _ = base_bundle
    texts = [t for t, _ in support_tickets(40, seed=8, ambiguous_share=0.0)]
    specs = tuple(s for s in C.SPECS if s.name == "onnx-int8")
    base = C.BaseVariants(label="tiny v1", model_dir=tiny_bert_dir, bundles={"onnx-int8": bundle})
    (result,) = C.compile_version(
        family="text-classifier",
        model_dir=head_only,
        work=tmp_path / "child",
        eval_inputs=C.EvalInputs(texts=texts, calibration_texts=texts),
        manifest_base={"model": "child"},
        specs=specs,
        base=base,
    )
    assert result.bundle_path is not None
    with tarfile.open(result.bundle_path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    q = manifest["quantization"]
    assert q["encoder_sha256"] == C.encoder_digest(tiny_bert_dir)
    assert q["tried"][0]["plan"] == f"inherited-{BASE_PLAN.name}"
    if q["inherited_from"] is not None:  # the base's plan passed parity here
        assert set(_int8_tensors(base_int8)) <= set(_int8_tensors(tmp_path / "child" / "onnx-int8.onnx"))
    # Another encoder (a tuned copy): the base's plan is not tried.
    tuned = tmp_path / "tuned"
    shutil.copytree(head_only, tuned)
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(tuned / "model.safetensors"))
    name = next(n for n in tensors if "layer.0" in n and n.endswith("dense.weight"))
    tensors[name] = tensors[name] * np.float32(1.01)
    save_file(tensors, str(tuned / "model.safetensors"))
    (other,) = C.compile_version(
        family="text-classifier",
        model_dir=tuned,
        work=tmp_path / "tuned-work",
        eval_inputs=C.EvalInputs(texts=texts, calibration_texts=texts),
        manifest_base={"model": "tuned"},
        specs=specs,
        base=base,
    )
    assert other.quantization["tried"][0]["plan"] == "int8"
    assert other.quantization["inherited_from"] is None
