"""Graph rewrites that make int8 MiniLM faster without changing what it
computes: layer norms as RMS norm of the centred input (``fast_layer_norms``)."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from runners import compile as C


def _ops(path: Path) -> collections.Counter[str]:
    import onnx

    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _feeds(seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for batch, seq in ((1, 7), (3, 16)):
        ids = rng.integers(1000, 5000, size=(batch, seq)).astype(np.int64)
        ids[:, 0], ids[:, -1] = 101, 102
        mask = np.ones_like(ids)
        mask[-1, seq // 2 :] = 0  # padding in the last row
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def _outputs(path: Path, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    session = C._session(path)
    return [session.run(None, f)[0] for f in feeds]


@pytest.mark.parametrize("fused", [False, True])
def test_fast_layer_norms_compute_the_same_encoder(tiny_bert_dir: Path, tmp_path: Path, fused: bool) -> None:
    C.export_onnx("sentence-encoder", tiny_bert_dir, tmp_path / "fp32.onnx")
    src = tmp_path / "fp32.onnx"
    if fused:
        C.optimize_bert(src, tmp_path / "opt.onnx", num_heads=2, hidden_size=32)
        src = tmp_path / "opt.onnx"
    before = _ops(src)
    norms = before["LayerNormalization"] + before["SkipLayerNormalization"]
    assert norms >= 4  # two per layer (and the embeddings' unless fused into EmbedLayerNormalization)
    assert C.rewrite_layer_norms(src, tmp_path / "fast.onnx") == norms
    after = _ops(tmp_path / "fast.onnx")
    assert after["LayerNormalization"] == after["SkipLayerNormalization"] == 0
    assert after["SimplifiedLayerNormalization"] == norms
    assert after["EmbedLayerNormalization"] == before["EmbedLayerNormalization"]
    feeds = _feeds()
    for want, got in zip(_outputs(src, feeds), _outputs(tmp_path / "fast.onnx", feeds), strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


def test_a_layer_norm_whose_statistics_are_read_stays_and_the_skip_sum_is_kept(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    h = 16
    inits = [
        numpy_helper.from_array(rng.normal(size=h).astype(np.float32) + 1, name)
        for name in ("gamma", "beta", "bias", "gamma2")
    ]
    nodes = [
        # input + skip + bias, normalised; its sum output is read further on.
        helper.make_node(
            "SkipLayerNormalization",
            ["x", "skip", "gamma", "beta", "bias"],
            ["y1", "", "", "sum"],
            domain="com.microsoft",
            epsilon=1e-5,
        ),
        # A plain layer norm without beta.
        helper.make_node("LayerNormalization", ["sum", "gamma2"], ["y2"], axis=-1, epsilon=1e-6),
        # One whose mean output is read: left alone.
        helper.make_node("LayerNormalization", ["y2", "gamma", "beta"], ["y3", "mean"], axis=-1),
        helper.make_node("Add", ["y1", "y3"], ["y13"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "s", h]) for n in ("x", "skip")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y13", "sum", "mean")],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "g.onnx"))
    assert C.rewrite_layer_norms(tmp_path / "g.onnx", tmp_path / "fast.onnx") == 2
    ops = _ops(tmp_path / "fast.onnx")
    assert ops["SkipLayerNormalization"] == 0
    assert ops["LayerNormalization"] == 1
    x, skip = rng.normal(size=(2, 5, h)).astype(np.float32) * 3, rng.normal(size=(2, 5, h)).astype(np.float32)
    want = C._session(tmp_path / "g.onnx").run(None, {"x": x, "skip": skip})
    got = C._session(tmp_path / "fast.onnx").run(None, {"x": x, "skip": skip})
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, atol=2e-5, rtol=1e-4)
