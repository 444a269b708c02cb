"""How served variants run: the session settings recorded in the bundle's
manifest, and inputs at their own lengths (batched by length, order kept) —
for predict / try it and for leaderboard evaluations alike."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.django_db

# Lengths deliberately mixed (and not sorted), so that batching by length reorders them.
TEXTS = [
    "refund",
    "I was charged twice on my invoice last month and nobody answered my emails about it",
    "my parcel never arrived",
    "the app crashes",
    "please cancel my subscription before the next billing date, I no longer use the service at all",
    "reset password",
    "where is my order? it has been three weeks",
    "invoice",
    "the delivery box was damaged and the item inside was broken",
    "hello",
]


def _with_manifest(bundle: Path, out: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of ``bundle`` whose manifest.json went through ``change`` (still the first member)."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        members = src.getmembers()
        for member in members:
            body = src.extractfile(member)
            assert body is not None
            data = body.read()
            if member.name == "manifest.json":
                manifest = json.loads(data)
                change(manifest)
                data = json.dumps(manifest).encode()
            info = tarfile.TarInfo(member.name)
            info.size, info.mode = len(data), 0o644
            dst.addfile(info, io.BytesIO(data))
    return out


def _served(model: Any, bundle: Path) -> tuple[Any, Any]:
    """The model's version and its variant, now pointing at ``bundle``."""
    from catalog.storage import artifact_put_path

    version = model.latest_version
    variant = version.variants.get()
    stored = artifact_put_path(bundle)
    variant.sha256, variant.size = stored.sha256, stored.size
    variant.save()
    return version, variant


class _Recorder:
    """An onnxruntime session that remembers the shape of every batch it ran."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, names: Any, feed: dict[str, np.ndarray]) -> Any:
        self.feeds.append({k: v.copy() for k, v in feed.items()})
        return self.session.run(names, feed)

    def get_inputs(self) -> Any:
        return self.session.get_inputs()


def _one_by_one(graph: Any, texts: list[str]) -> np.ndarray:
    """Each text alone (batch 1, no padding at all)."""
    return np.concatenate([graph.run([t], batch_size=1) for t in texts])


# --- session settings from the manifest ------------------------------------------------------


def test_sessions_are_built_with_the_manifest_session_options(
    make_text_classifier: Callable[..., Any], tiny_classifier_build: Any, tmp_path: Path
) -> None:
    import onnxruntime as ort

    from catalog.services.predict import runner_get
    from runners.compile import hardware_fingerprint

    def record(manifest: dict[str, Any]) -> None:
        manifest["session_options"] = {
            "provider": "CPUExecutionProvider",
            "intra_op_num_threads": 1,
            "inter_op_num_threads": 1,
            "allow_spinning": False,
            "graph_optimization_level": "ORT_ENABLE_BASIC",
        }
        manifest["measured_on"] = dict(hardware_fingerprint("CPUExecutionProvider"))  # this machine

    version, variant = _served(
        make_text_classifier("Options"), _with_manifest(tiny_classifier_build.bundle, tmp_path / "b.tar", record)
    )
    graph = runner_get(version, variant)
    used = graph._session.get_session_options()
    assert used.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert used.intra_op_num_threads == 1
    assert used.inter_op_num_threads == 1
    assert used.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    # What the compile wrote is what serving read (the manifest is kept beside the graph).
    assert graph.options["graph_optimization_level"] == "ORT_ENABLE_BASIC"


def test_the_options_the_compile_records_are_the_ones_served(
    make_text_classifier: Callable[..., Any], tiny_classifier_build: Any
) -> None:
    """The fixture's bundle comes from runners.compile as is: its recorded settings are applied."""
    import onnxruntime as ort

    from catalog.services.predict import _bundle_dir, bundle_manifest, runner_get, serving_options

    model = make_text_classifier("As compiled")
    version = model.latest_version
    variant = version.variants.get()
    graph = runner_get(version, variant)
    with tarfile.open(tiny_classifier_build.bundle) as tar:
        body = tar.extractfile("manifest.json")
        assert body is not None
        recorded = json.loads(body.read())["session_options"]
    manifest = bundle_manifest(variant, _bundle_dir(variant))
    assert manifest["session_options"] == recorded
    assert graph.options == serving_options(manifest)
    used = graph._session.get_session_options()
    level = getattr(ort.GraphOptimizationLevel, recorded["graph_optimization_level"])
    assert used.graph_optimization_level == level
    assert used.intra_op_num_threads == min(recorded["intra_op_num_threads"], graph.options["intra_op_num_threads"])


def test_serving_options_fit_the_recorded_settings_to_this_machine(settings: Any) -> None:
    from catalog.services.predict import available_cores, serving_options
    from runners.compile import hardware_fingerprint, session_options

    here = dict(hardware_fingerprint("CPUExecutionProvider"))
    recorded = {
        "provider": "CPUExecutionProvider",
        "intra_op_num_threads": 64,
        "inter_op_num_threads": 1,
        "allow_spinning": True,
        "graph_optimization_level": "ORT_ENABLE_EXTENDED",
    }
    # Same machine, recorded on more cores than this process may use: threads clamped.
    same = serving_options({"session_options": recorded, "measured_on": here}, cores=2)
    assert same["intra_op_num_threads"] == 2
    assert same["graph_optimization_level"] == "ORT_ENABLE_EXTENDED"
    assert same["allow_spinning"] is False  # two cores: nothing to spare for busy-waiting
    roomy = serving_options({"session_options": recorded, "measured_on": here}, cores=16)
    assert roomy["intra_op_num_threads"] == 16
    assert roomy["allow_spinning"] is True  # as recorded, where cores are to spare

    # Another machine: its per-hardware choices do not carry over; the graph level does.
    other = {**here, "cpu": "Some Other CPU 128-Core", "cores": 128}
    moved = serving_options({"session_options": recorded, "measured_on": other}, cores=2)
    local = session_options("CPUExecutionProvider")
    assert moved["intra_op_num_threads"] == min(local["intra_op_num_threads"], 2)
    assert moved["allow_spinning"] is False
    assert moved["graph_optimization_level"] == "ORT_ENABLE_EXTENDED"

    # Nothing recorded, or nonsense recorded: this machine's own settings.
    for manifest in (None, {}, {"session_options": {"graph_optimization_level": "FAST", "intra_op_num_threads": "x"}}):
        fallback = serving_options(manifest)
        assert fallback["graph_optimization_level"] == local["graph_optimization_level"]
        assert fallback["intra_op_num_threads"] == min(local["intra_op_num_threads"], available_cores())

    # An operator's cap wins over what was recorded.
    settings.PREDICT_THREADS = 1
    assert serving_options({"session_options": recorded, "measured_on": here}, cores=16)["intra_op_num_threads"] == 1


# --- inputs at their own lengths ------------------------------------------------------------


def test_inputs_run_at_their_own_lengths_batched_by_length(make_text_classifier: Callable[..., Any]) -> None:
    from catalog.services.predict import _load

    model = make_text_classifier("Lengths")
    version = model.latest_version
    graph = _load(version, version.variants.get())
    lengths = [len(ids) for ids in graph.tokenize(TEXTS).ids]
    assert len(set(lengths)) > 3

    alone = _one_by_one(graph, TEXTS)
    recorder = _Recorder(graph._session)
    graph._session = recorder
    batched = graph.run(TEXTS, batch_size=3)

    # Same answers, row for row, in the texts' order.
    assert batched.shape == alone.shape == (len(TEXTS), len(version.labels))
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    # Batches of 3, shortest texts first, each padded to its own longest (no fixed length).
    shapes = [feed["input_ids"].shape for feed in recorder.feeds]
    assert [s[0] for s in shapes] == [3, 3, 3, 1]
    expected = sorted(lengths)
    assert [s[1] for s in shapes] == [max(expected[i : i + 3]) for i in range(0, len(expected), 3)]
    for feed in recorder.feeds:
        real = feed["attention_mask"].sum(axis=1)
        assert real.max() == feed["input_ids"].shape[1]
        assert list(real) == sorted(real)
    assert sum(s[0] * s[1] for s in shapes) < len(TEXTS) * max(lengths)  # less padding than one padded batch


def test_predict_answers_in_the_inputs_order(make_text_classifier: Callable[..., Any], settings: Any) -> None:
    from catalog.services.predict import _load, model_predict

    settings.PREDICT_BATCH_SIZE = 2
    model = make_text_classifier("Order")
    version = model.latest_version
    labels = [str(label) for label in version.labels]
    alone = _one_by_one(_load(version, version.variants.get()), TEXTS)
    result = model_predict(model=model, texts=TEXTS)
    assert len(result.predictions) == len(TEXTS)
    for row, pred in zip(alone, result.predictions, strict=True):
        assert pred.label == labels[int(row.argmax())]
        assert [pred.scores[label] for label in labels] == pytest.approx(list(row), abs=1e-5)


def test_a_leaderboard_evaluation_runs_the_rows_batched_by_length(
    make_text_classifier: Callable[..., Any], settings: Any
) -> None:
    from catalog.services.predict import _load, runner_get
    from evaluations.services import _probabilities

    settings.PREDICT_BATCH_SIZE = 4
    model = make_text_classifier("Leaderboard lengths")
    version = model.latest_version
    variant = version.variants.get()
    alone = _one_by_one(_load(version, variant), TEXTS)
    graph = runner_get(version, variant)
    recorder = _Recorder(graph._session)
    graph._session = recorder
    try:
        probs, runner, _, per_input = _probabilities(version, TEXTS)
    finally:
        graph._session = recorder.session
    assert runner == "onnx-fp32"
    assert per_input > 0
    np.testing.assert_allclose(probs, alone, atol=1e-5)
    widths = [feed["input_ids"].shape[1] for feed in recorder.feeds]
    assert [feed["input_ids"].shape[0] for feed in recorder.feeds] == [4, 4, 2]
    assert widths == sorted(widths)
    assert widths[0] < widths[-1]


def test_the_torch_fallback_runs_the_rows_sorted_by_length(
    make_text_classifier: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A classifier without an ONNX variant: its torch weights see the rows shortest
    first (batches pad little) and the answers come back in the rows' order."""
    from transformers import AutoTokenizer

    from catalog.storage import artifact_materialize
    from evaluations.services import _torch_probabilities
    from runners.families import text_classifier

    model = make_text_classifier("Torch lengths", variant=False)
    version = model.latest_version
    predict = text_classifier.predict
    seen: list[list[str]] = []

    def recording(model_dir: Path, texts: list[str], **kwargs: Any) -> np.ndarray:
        seen.append(list(texts))
        return predict(model_dir, texts, **kwargs)

    monkeypatch.setattr(text_classifier, "predict", recording)
    probs = _torch_probabilities(version, TEXTS)
    [given] = seen
    assert sorted(given) == sorted(TEXTS)
    assert given != TEXTS
    model_dir = artifact_materialize(version.files, tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    lengths = [len(tokenizer(t)["input_ids"]) for t in given]
    assert lengths == sorted(lengths)
    monkeypatch.setattr(text_classifier, "predict", predict)
    np.testing.assert_allclose(probs, predict(model_dir, TEXTS, device="cpu"), atol=1e-5)
