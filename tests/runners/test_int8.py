"""int8 that keeps its accuracy: SmoothQuant scaling, per-node sensitivity, the
plan search; and the export that lets onnxruntime fuse attention."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runners import compile as C

HIDDEN = 64


def _matmul_graph(path: Path, inputs: dict[str, np.ndarray]) -> None:
    """y = Σ_i x_i · W_i (one MatMul per named input, weights given), summed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, graph_inputs, terms = [], [], [], []
    for name, weight in inputs.items():
        graph_inputs.append(helper.make_tensor_value_info(f"x_{name}", TensorProto.FLOAT, ["b", "s", weight.shape[0]]))
        inits.append(numpy_helper.from_array(weight.astype(np.float32), f"W_{name}"))
        nodes.append(helper.make_node("MatMul", [f"x_{name}", f"W_{name}"], [f"y_{name}"], name=name))
        terms.append(f"y_{name}")
    if len(terms) > 1:
        nodes.append(helper.make_node("Sum", terms, ["y"], name="sum"))
    else:
        nodes.append(helper.make_node("Identity", terms, ["y"], name="out"))
    graph = helper.make_graph(
        nodes, "g", graph_inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _activations(rng: np.random.Generator, outlier: float, n: int = 4) -> list[np.ndarray]:
    """Batches of activations whose channel 3 is ``outlier`` times larger than the rest."""
    out = []
    for _ in range(n):
        x = rng.normal(size=(2, 16, HIDDEN)).astype(np.float32)
        x[..., 3] *= outlier
        out.append(x)
    return out


def _run(path: Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    session = C._session(path)
    return np.concatenate([session.run(None, f)[0] for f in feeds])


def _relative_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float(np.linalg.norm(candidate - reference) / np.linalg.norm(reference))


def test_smoothing_keeps_fp32_outputs_and_shrinks_the_int8_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _matmul_graph(tmp_path / "g.onnx", {"a": rng.normal(size=(HIDDEN, 32))})
    feeds = [{"x_a": x} for x in _activations(rng, outlier=300.0)]
    reference = _run(tmp_path / "g.onnx", feeds)

    info = C.smooth_activations(tmp_path / "g.onnx", tmp_path / "smoothed.onnx", feeds, alpha=0.5)
    assert info["activations"] == 1
    assert info["max_outlier_ratio"] > 50  # the outlier channel was seen
    smoothed = _run(tmp_path / "smoothed.onnx", feeds)
    assert _relative_error(reference, smoothed) < 1e-5  # the same function in fp32

    C.quantize_int8(tmp_path / "g.onnx", tmp_path / "plain-int8.onnx")
    C.quantize_int8(tmp_path / "smoothed.onnx", tmp_path / "smoothed-int8.onnx")
    plain_error = _relative_error(reference, _run(tmp_path / "plain-int8.onnx", feeds))
    smoothed_error = _relative_error(reference, _run(tmp_path / "smoothed-int8.onnx", feeds))
    assert smoothed_error < plain_error / 3, (plain_error, smoothed_error)


def test_node_sensitivity_ranks_the_node_with_the_outlier_input_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    weights = {"calm": rng.normal(size=(HIDDEN, 32)), "spiky": rng.normal(size=(HIDDEN, 32)) / 30}
    _matmul_graph(tmp_path / "g.onnx", weights)
    calm, spiky = _activations(rng, outlier=1.0), _activations(rng, outlier=300.0)
    feeds = [{"x_calm": c, "x_spiky": s} for c, s in zip(calm, spiky, strict=True)]
    ranking = C.node_sensitivity(tmp_path / "g.onnx", tmp_path, feeds)
    assert [name for name, _ in ranking] == ["spiky", "calm"]
    assert ranking[0][1] > 5 * ranking[1][1]
    assert not (tmp_path / "sensitivity-int8.onnx").exists()  # scratch graphs removed


def test_outlier_channels_run_in_fp32_and_the_int8_error_collapses(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    _matmul_graph(tmp_path / "g.onnx", {"a": rng.normal(size=(HIDDEN, 32))})
    feeds = [{"x_a": x} for x in _activations(rng, outlier=300.0)]
    reference = _run(tmp_path / "g.onnx", feeds)
    done = C.prepare_int8(tmp_path / "g.onnx", tmp_path / "split.onnx", feeds, outlier_channels=2)
    assert done["decomposed"] == ["x_a"]
    assert done["fp32_nodes"] == ["a/OutlierMatMul"]
    assert done["outlier_ratios"]["x_a"] > 50
    assert _relative_error(reference, _run(tmp_path / "split.onnx", feeds)) < 1e-5  # the same function
    C.quantize_int8(tmp_path / "g.onnx", tmp_path / "plain.onnx")
    C.quantize_int8(tmp_path / "split.onnx", tmp_path / "split-int8.onnx", exclude=done["fp32_nodes"])
    plain = _relative_error(reference, _run(tmp_path / "plain.onnx", feeds))
    split = _relative_error(reference, _run(tmp_path / "split-int8.onnx", feeds))
    assert split < plain / 5, (plain, split)
    # An activation without outliers is left whole.
    calm = [{"x_a": x} for x in _activations(rng, outlier=1.0)]
    assert C.prepare_int8(tmp_path / "g.onnx", tmp_path / "calm.onnx", calm, outlier_channels=2)["decomposed"] == []


def test_the_unshared_scope_splits_only_activations_the_projections_alone_read(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    # x feeds a projection and the residual (an Add), like a layer-norm output;
    # z only a projection, like a GELU output. Both have an outlier channel.
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W_a"], ["y_a"], name="a"),
            helper.make_node("MatMul", ["z", "W_b"], ["y_b"], name="b"),
            helper.make_node("Add", ["y_a", "x"], ["r"], name="residual"),
            helper.make_node("Sum", ["r", "y_b"], ["y"], name="sum"),
        ],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "s", HIDDEN]) for n in ("x", "z")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(rng.normal(size=(HIDDEN, HIDDEN)).astype(np.float32), w) for w in ("W_a", "W_b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "g.onnx"))
    feeds = [{"x": x, "z": z} for x, z in zip(_activations(rng, 50.0), _activations(rng, 50.0), strict=True)]
    reference = _run(tmp_path / "g.onnx", feeds)

    everywhere = C.prepare_int8(tmp_path / "g.onnx", tmp_path / "all.onnx", feeds, smoothing=0.75, outlier_channels=2)
    assert sorted(everywhere["decomposed"]) == ["x", "z"]
    done = C.prepare_int8(
        tmp_path / "g.onnx", tmp_path / "u.onnx", feeds, smoothing=0.75, outlier_channels=2, outlier_scope="unshared"
    )
    assert done["decomposed"] == ["z"]
    assert done["smoothed"] == ["x"]
    assert done["fp32_nodes"] == ["b/OutlierMatMul"]
    assert _relative_error(reference, _run(tmp_path / "u.onnx", feeds)) < 1e-5  # the same function
    with pytest.raises(ValueError, match="outlier_scope"):
        C.prepare_int8(tmp_path / "g.onnx", tmp_path / "x.onnx", feeds, outlier_channels=2, outlier_scope="some")


def test_the_plan_search_stops_at_the_first_plan_that_passes(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    _matmul_graph(tmp_path / "g.onnx", {"calm": rng.normal(size=(HIDDEN, 32)), "spiky": rng.normal(size=(HIDDEN, 32))})
    feeds = [{"x_calm": c, "x_spiky": s} for c, s in zip(_activations(rng, 1.0), _activations(rng, 1e3), strict=True)]
    reference = _run(tmp_path / "g.onnx", feeds)
    errors: list[float] = []

    def check(candidate: Path) -> C.Parity:
        error = _relative_error(reference, _run(candidate, feeds))
        errors.append(error)
        return C.Parity(max_abs_diff=error, top1_agreement=None, samples=8, passed=error < 0.01, reason="")

    parity, record = C.build_int8(
        tmp_path / "g.onnx", tmp_path / "q.onnx", work=tmp_path, calibration=feeds, check=check
    )
    assert parity.passed
    names = [t["plan"] for t in record["tried"]]
    assert names == [p.name for p in C.INT8_PLANS[: len(names)]]  # in order, stopped at the first pass
    assert [t["passed"] for t in record["tried"]] == [False] * (len(names) - 1) + [True]
    assert errors[0] > 0.01  # plain int8 fails here
    assert record["plan"] == names[-1]
    assert record["weight_nodes"]["int8"] + record["weight_nodes"]["fp32"] == 2
    assert not list(tmp_path.glob("q-prepared-*.onnx"))  # scratch graphs removed


def test_the_plan_search_keeps_the_most_sensitive_node_fp32_last(tmp_path: Path) -> None:
    import onnx

    rng = np.random.default_rng(6)
    _matmul_graph(tmp_path / "g.onnx", {"calm": rng.normal(size=(HIDDEN, 32)), "spiky": rng.normal(size=(HIDDEN, 32))})
    feeds = [{"x_calm": c, "x_spiky": s} for c, s in zip(_activations(rng, 1.0), _activations(rng, 1e4), strict=True)]

    def check(candidate: Path) -> C.Parity:
        # Passes only once "spiky" is left a float MatMul (not quantised).
        graph = onnx.load(str(candidate)).graph
        kept = any(n.name == "spiky" and n.op_type == "MatMul" for n in graph.node)
        return C.Parity(max_abs_diff=0.0, top1_agreement=None, samples=8, passed=kept, reason="")

    plans = (C.QuantPlan("int8"), C.QuantPlan("one-fp32", keep_fp32=1, embeddings=False))
    parity, record = C.build_int8(
        tmp_path / "g.onnx", tmp_path / "q.onnx", work=tmp_path, calibration=feeds, check=check, plans=plans
    )
    assert parity.passed
    assert record["plan"] == "one-fp32"
    assert record["fp32_nodes"] == ["spiky"]  # the sweep ranked it first
    assert record["sensitivity"][0]["node"] == "spiky"
    assert record["weight_nodes"] == {"int8": 1, "fp32": 1}
    assert record["embeddings"] == "fp32"
    assert [t["passed"] for t in record["tried"]] == [False, True]


def test_the_plan_search_says_when_nothing_passes(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    _matmul_graph(tmp_path / "g.onnx", {"a": rng.normal(size=(HIDDEN, 32))})
    feeds = [{"x_a": x} for x in _activations(rng, 1.0, n=2)]

    def never(candidate: Path) -> C.Parity:
        return C.Parity(max_abs_diff=1.0, top1_agreement=0.5, samples=8, passed=False, reason="top-1 agreement 50%")

    parity, record = C.build_int8(
        tmp_path / "g.onnx", tmp_path / "q.onnx", work=tmp_path, calibration=feeds, check=never
    )
    assert not parity.passed
    assert len(record["tried"]) == len(C.INT8_PLANS)
    # Without calibration inputs only the uncalibrated plan can be built.
    _, bare = C.build_int8(tmp_path / "g.onnx", tmp_path / "q.onnx", work=tmp_path, calibration=[], check=never)
    assert [t["plan"] for t in bare["tried"]] == ["int8"]


def test_the_export_exposes_attention_to_onnxruntime_fusion(tiny_bert_dir: Path, tmp_path: Path) -> None:
    import collections

    import onnx

    C.export_onnx("sentence-encoder", tiny_bert_dir, tmp_path / "fp32.onnx")
    C.optimize_bert(tmp_path / "fp32.onnx", tmp_path / "opt.onnx", num_heads=2, hidden_size=32)
    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node)
    assert ops["Attention"] == 2  # one per layer: the fused kernel, not MatMul/Softmax/MatMul
    assert ops["Softmax"] == 0
    assert ops["SkipLayerNormalization"] >= 2


def test_length_batches_pad_each_batch_to_its_longest() -> None:
    tokenized = C.Tokenized([[101, 5, 102], [101, 102], [101, 7, 8, 9, 102], [101, 6, 102]], pad_id=0)
    assert list(tokenized.order()) == [1, 0, 3, 2]
    first, second = C.length_batches(tokenized, 2)
    assert first["input_ids"].tolist() == [[101, 102, 0], [101, 5, 102]]
    assert first["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert second["input_ids"].shape == (2, 5)
    assert second["attention_mask"].sum() == 8


def test_session_options_name_what_the_session_gets(tmp_path: Path) -> None:
    options = C.session_options()
    assert 1 <= options["intra_op_num_threads"] <= 8
    assert options["inter_op_num_threads"] == 1
    assert isinstance(options["allow_spinning"], bool)
    rng = np.random.default_rng(4)
    _matmul_graph(tmp_path / "g.onnx", {"a": rng.normal(size=(HIDDEN, 8))})
    session = C._session(tmp_path / "g.onnx", options={**options, "intra_op_num_threads": 1})
    assert session.get_session_options().intra_op_num_threads == 1
    entries: Any = session.get_session_options()
    assert entries.get_session_config_entry("session.intra_op.allow_spinning") == (
        "1" if options["allow_spinning"] else "0"
    )


@pytest.mark.parametrize(("cores", "spin"), [(2, False), (16, True)])
def test_spinning_only_with_cores_to_spare(monkeypatch: pytest.MonkeyPatch, cores: int, spin: bool) -> None:
    monkeypatch.setattr(C.os, "sched_getaffinity", lambda pid: set(range(cores)))
    options = C.session_options()
    assert options["allow_spinning"] is spin
    assert options["intra_op_num_threads"] == min(cores, 8)


def test_choose_threads_keeps_the_faster_thread_count_and_says_what_it_measured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rng = np.random.default_rng(4)
    _matmul_graph(tmp_path / "g.onnx", {"a": rng.normal(size=(HIDDEN, 32))})
    options = {**C.session_options(), "intra_op_num_threads": 2}

    def feed(batch: int) -> dict[str, np.ndarray]:
        return {"x_a": np.ones((batch, 4, HIDDEN), dtype=np.float32)}

    class Slow:
        """A session whose run takes longer with more threads (2 threads: 4 ms, 1 thread: 1 ms)."""

        def __init__(self, threads: int) -> None:
            self.threads = threads

        def run(self, *args: Any) -> None:
            import time

            time.sleep(0.002 * self.threads**2 / 2)

    monkeypatch.setattr(C, "_session", lambda path, options=None, **_: Slow(int(options["intra_op_num_threads"])))
    workloads = C.thread_workloads(feed, None)
    assert {w: len(f) for w, f in workloads.items()} == {"b1": 6, "b32": 2}
    chosen = C.choose_threads(tmp_path / "g.onnx", workloads, options, rounds=1)
    assert chosen["intra_op_num_threads"] == 1
    assert set(chosen["threads_measured"]) == {"1", "2", "ratio"}
    assert chosen["threads_measured"]["2"]["b1"] > chosen["threads_measured"]["1"]["b1"]
    assert chosen["threads_measured"]["ratio"]["b1"] == pytest.approx(4.0, rel=0.5)  # 2 threads / 1 thread
    assert {k: v for k, v in chosen.items() if k not in ("intra_op_num_threads", "threads_measured")} == {
        k: v for k, v in options.items() if k != "intra_op_num_threads"
    }
    # One thread to begin with: nothing to choose.
    assert C.choose_threads(tmp_path / "g.onnx", workloads, {**options, "intra_op_num_threads": 1}) == {
        **options,
        "intra_op_num_threads": 1,
    }


def test_choose_threads_pairs_the_counts_within_a_round(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The ratio is taken between the two counts' runs of the same round (load
    that changes between rounds falls on both sides of it): two threads, 20%
    faster in every round whatever the load, give a ratio of 0.8 and win."""
    rng = np.random.default_rng(4)
    _matmul_graph(tmp_path / "g.onnx", {"a": rng.normal(size=(HIDDEN, 32))})
    options = {**C.session_options(), "intra_op_num_threads": 2}
    clock = {"now": 0.0, "calls": 0}
    # Per round (both counts, 2 feeds each of the one workload): how slow the machine is.
    load = [1.0, 1.0, 5.0, 5.0, 5.0]

    class Loaded:
        def __init__(self, threads: int) -> None:
            self.threads = threads

        def run(self, *args: Any) -> None:
            r = min(clock["calls"] // 4, len(load) - 1)  # 4 timed runs per round (the warm-up is not counted)
            clock["now"] += 0.001 * load[r] * (0.8 if self.threads == 2 else 1.0)

    def tick() -> float:
        return clock["now"]

    def session(path: Path, options: dict[str, Any] | None = None, **_: Any) -> Loaded:
        return Loaded(int((options or {})["intra_op_num_threads"]))

    monkeypatch.setattr(C, "_session", session)
    monkeypatch.setattr(C.time, "perf_counter", tick)
    warm = Loaded.run

    def counted(self: Loaded, *args: Any) -> None:
        warm(self, *args)
        clock["calls"] += 1

    monkeypatch.setattr(Loaded, "run", counted)
    clock["calls"] = -2  # the two warm-up runs
    chosen = C.choose_threads(tmp_path / "g.onnx", {"b1": [{}, {}]}, options, rounds=5)
    assert chosen["threads_measured"]["ratio"]["b1"] == pytest.approx(0.8)
    assert chosen["intra_op_num_threads"] == 2


@pytest.mark.parametrize(("slower", "threads"), [(1.07, 2), (1.3, 1)])
def test_choose_threads_drops_to_one_thread_only_when_it_wins_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, slower: float, threads: int
) -> None:
    """Two threads 7% slower (run 6's seed 0, measured under a passing load)
    stay; 30% slower (past ``THREADS_ONE_WINS_BY``) give way to one."""
    clock = {"now": 0.0}

    class Timed:
        def __init__(self, count: int) -> None:
            self.count = count

        def run(self, *args: Any) -> None:
            clock["now"] += 0.001 * (slower if self.count == 2 else 1.0)

    monkeypatch.setattr(
        C, "_session", lambda path, options=None, **_: Timed(int((options or {})["intra_op_num_threads"]))
    )
    monkeypatch.setattr(C.time, "perf_counter", lambda: clock["now"])
    options = {**C.session_options(), "intra_op_num_threads": 2}
    chosen = C.choose_threads(tmp_path / "g.onnx", {"b1": [{}], "b32": [{}]}, options, rounds=3)
    assert chosen["threads_measured"]["ratio"] == {"b1": pytest.approx(slower), "b32": pytest.approx(slower)}
    assert chosen["intra_op_num_threads"] == threads


def test_latencies_of_several_models_are_measured_on_the_same_inputs_interleaved(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    _matmul_graph(tmp_path / "a.onnx", {"a": rng.normal(size=(HIDDEN, 32))})
    _matmul_graph(tmp_path / "b.onnx", {"a": rng.normal(size=(HIDDEN, 32))})
    seen: list[str] = []
    real_session = C._session

    class Recording:
        def __init__(self, name: str, path: Path) -> None:
            self.name, self.inner = name, real_session(path)

        def run(self, outputs: Any, feed: dict[str, np.ndarray]) -> Any:
            seen.append(self.name)
            return self.inner.run(outputs, {"x_a": feed["x_a"]})

    def feed(batch: int) -> dict[str, np.ndarray]:
        return {"x_a": np.ones((batch, 4, HIDDEN), dtype=np.float32), "attention_mask": np.ones((batch, 4))}

    real = {1: [feed(1), feed(1)], 32: [feed(32)]}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(C, "_session", lambda path, provider="", options=None: Recording(Path(path).stem, path))
        out = C.measure_latencies(
            {"a": (tmp_path / "a.onnx", "CPUExecutionProvider", None), "b": (tmp_path / "b.onnx", "", None)},
            feed,
            runs=6,
            warmup=1,
            real_feeds=real,
            rounds=3,
        )
    for name in ("a", "b"):
        assert [(lat.batch, lat.lengths, lat.runs) for lat in out[name]] == [
            (1, "fixed", 6),
            (32, "fixed", 10),
            (1, "real", 6),
            (32, "real", 10),
        ]
    # Runs alternate between the models in rounds, not all of one then all of the other.
    switches = sum(1 for x, y in zip(seen, seen[1:], strict=False) if x != y)
    assert switches >= 4 * 3 * 2 - 1
