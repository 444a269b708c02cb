"""Split ("composite") files in the artifact store: tensors stored once.

A bundle tar, an ONNX graph or a safetensors file stored with ``split=True``
becomes chunks (one per large tensor, one for the bytes between) and a recipe;
every reader gets the file's exact bytes back, and a second file that shares
tensors with the first adds only what differs."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from catalog.storage import (
    ArtifactError,
    ArtifactIntegrityError,
    artifact_chunks,
    artifact_exists,
    artifact_is_composite,
    artifact_key,
    artifact_local_path,
    artifact_materialize,
    artifact_open,
    artifact_open_range,
    artifact_put,
    artifact_put_path,
    artifact_size,
    chunk_key,
    composite_key,
)
from catalog.storage_layout import MIN_SPAN, file_spans, onnx_spans, safetensors_spans

RNG = np.random.default_rng(7)


def make_onnx(path: Path, encoder: np.ndarray, head: np.ndarray, *, constant: np.ndarray | None = None) -> Path:
    """x[batch, 256] → MatMul(encoder) → Relu → MatMul(head) → Softmax: a
    256 KB "encoder" shared between versions, a small head that is not."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("MatMul", ["x", "encoder.weight"], ["h"], name="encoder"),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "head.weight"], ["logits"], name="head"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    if constant is not None:  # a large tensor held by a node attribute, not an initializer
        nodes.insert(0, helper.make_node("Constant", [], ["table"], value=numpy_helper.from_array(constant, "table")))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 256])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", head.shape[1]])],
        initializer=[numpy_helper.from_array(encoder, "encoder.weight"), numpy_helper.from_array(head, "head.weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_bundle(tmp: Path, name: str, encoder: np.ndarray, head: np.ndarray, tokenizer: bytes) -> Path:
    from runners.compile import write_bundle

    folder = tmp / name
    folder.mkdir()
    make_onnx(folder / "model.onnx", encoder, head)
    (folder / "tokenizer.json").write_bytes(tokenizer)
    return write_bundle(
        tmp / f"{name}.tar",
        {"model.onnx": folder / "model.onnx", "tokenizer.json": folder / "tokenizer.json"},
        {"model": name, "labels": [str(i) for i in range(head.shape[1])]},
    )


def store_files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


ENCODER = RNG.normal(size=(256, 256)).astype(np.float32)  # 256 KiB
TOKENIZER = json.dumps({"vocab": {f"tok{i}": i for i in range(8000)}}).encode()


# --- where files are cut ----------------------------------------------------------


def test_onnx_spans_are_the_large_tensors(tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    constant = RNG.normal(size=(80, 256)).astype(np.float32)
    path = make_onnx(tmp_path / "m.onnx", ENCODER, RNG.normal(size=(256, 3)).astype(np.float32), constant=constant)
    data = path.read_bytes()
    spans = onnx_spans(data)
    found = sorted(data[a:b] for a, b in spans)
    model = onnx.load(str(path))
    tensors = [numpy_helper.to_array(t) for t in model.graph.initializer]
    tensors += [numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node if n.op_type == "Constant"]
    expected = sorted(t.tobytes() for t in tensors if t.nbytes >= MIN_SPAN)
    assert len(expected) == 2  # the encoder and the Constant; the 3 KB head stays glue
    assert found == expected
    assert file_spans(path) == spans


def test_safetensors_spans_are_the_large_tensors(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    big, small = RNG.normal(size=(200, 100)).astype(np.float32), np.ones(10, dtype=np.float32)
    save_file({"big": big, "small": small}, str(tmp_path / "w.safetensors"), metadata={"format": "pt"})
    data = (tmp_path / "w.safetensors").read_bytes()
    spans = safetensors_spans(data)
    assert [data[a:b] for a, b in spans] == [big.tobytes()]


@pytest.mark.parametrize(
    "content",
    [b"\x00" * 200_000, os.urandom(200_000), b"\xff" * 8 + os.urandom(200_000), json.dumps([1] * 100_000).encode()],
)
@pytest.mark.parametrize("name", ["m.onnx", "w.safetensors", "b.tar", "notes.bin"])
def test_anything_unreadable_has_no_spans(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert file_spans(path) == []


# --- storing and reading split files ---------------------------------------------


def test_a_split_bundle_reads_back_byte_for_byte(artifact_store: Path, tmp_path: Path) -> None:
    head = RNG.normal(size=(256, 3)).astype(np.float32)
    bundle = make_bundle(tmp_path, "base", ENCODER, head, TOKENIZER)
    data = bundle.read_bytes()
    stored = artifact_put_path(bundle, split=True)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size == len(data)
    assert artifact_is_composite(stored.sha256)
    assert not (artifact_store / artifact_key(stored.sha256)).exists()
    assert (artifact_store / composite_key(stored.sha256)).is_file()
    chunks = dict(artifact_chunks(stored.sha256))
    # the encoder, the tokenizer member and the glue (tar headers, manifest, graph, head)
    assert len(chunks) == 3
    assert hashlib.sha256(ENCODER.tobytes()).hexdigest() in chunks
    assert hashlib.sha256(TOKENIZER).hexdigest() in chunks
    assert artifact_exists(stored.sha256)
    assert artifact_size(stored.sha256) == len(data)
    assert artifact_local_path(stored.sha256) is None  # no single file to hand out
    with artifact_open(stored.sha256) as fh:
        assert fh.read() == data
    with artifact_open(stored.sha256) as fh:  # small reads across chunk boundaries
        pieces = []
        while piece := fh.read(4093):
            pieces.append(piece)
        assert b"".join(pieces) == data
    with artifact_open(stored.sha256) as fh:
        assert fh.seek(-100, os.SEEK_END) == len(data) - 100
        assert fh.read() == data[-100:]
        assert fh.tell() == len(data)
    for start, length in [(0, 1), (511, 2), (1000, 300_000), (len(data) - 1, 1), (12345, 0)]:
        with artifact_open_range(stored.sha256, start, length) as piece:
            assert piece.read(7) + piece.read() == data[start : start + length]
    out = artifact_materialize([{"name": "b.tar", "sha256": stored.sha256}], tmp_path / "m")
    assert (out / "b.tar").read_bytes() == data
    # stored again: nothing new
    before = store_files(artifact_store)
    assert artifact_put_path(bundle, split=True) == stored
    assert artifact_put(io.BytesIO(data)) == stored  # nor a plain copy beside the composite
    assert store_files(artifact_store) == before


def test_a_fine_tune_that_shares_the_encoder_adds_only_what_differs(artifact_store: Path, tmp_path: Path) -> None:
    base = make_bundle(tmp_path, "base", ENCODER, RNG.normal(size=(256, 3)).astype(np.float32), TOKENIZER)
    artifact_put_path(base, split=True)
    before = store_files(artifact_store)
    tuned = make_bundle(tmp_path, "tuned", ENCODER, RNG.normal(size=(256, 5)).astype(np.float32), TOKENIZER)
    stored = artifact_put_path(tuned, split=True)
    after = store_files(artifact_store)
    added = {k: v for k, v in after.items() if k not in before}
    assert sum(added.values()) < 20_000 < tuned.stat().st_size // 10  # a glue chunk and a recipe
    assert sorted(k.split("/")[0] for k in added) == ["chunks", "composites"]
    with artifact_open(stored.sha256) as fh:
        assert fh.read() == tuned.read_bytes()


def test_safetensors_with_the_same_tensors_in_another_file_share_them(artifact_store: Path, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    encoder = {f"layer.{i}.weight": RNG.normal(size=(128, 128)).astype(np.float32) for i in range(4)}
    save_file(encoder, str(tmp_path / "base.safetensors"), metadata={"format": "pt"})
    # the fine-tune's own save: other metadata, other order — another file
    save_file(dict(reversed(list(encoder.items()))), str(tmp_path / "tuned.safetensors"), metadata={"x": "1"})
    assert (tmp_path / "base.safetensors").read_bytes() != (tmp_path / "tuned.safetensors").read_bytes()
    artifact_put_path(tmp_path / "base.safetensors", split=True)
    before = store_files(artifact_store)
    stored = artifact_put_path(tmp_path / "tuned.safetensors", split=True)
    added = sum(v for k, v in store_files(artifact_store).items() if k not in before)
    assert added < 2_000
    with artifact_open(stored.sha256) as fh:
        assert fh.read() == (tmp_path / "tuned.safetensors").read_bytes()


def test_a_file_with_nothing_to_split_is_stored_whole(artifact_store: Path, tmp_path: Path) -> None:
    path = tmp_path / "notes.bin"
    path.write_bytes(os.urandom(300_000))
    stored = artifact_put_path(path, split=True)
    assert not artifact_is_composite(stored.sha256)
    assert artifact_local_path(stored.sha256) == artifact_store / artifact_key(stored.sha256)
    assert artifact_chunks(stored.sha256) == []


def test_a_split_put_with_the_wrong_hash_stores_nothing(artifact_store: Path, tmp_path: Path, settings: Any) -> None:
    bundle = make_bundle(tmp_path, "base", ENCODER, RNG.normal(size=(256, 3)).astype(np.float32), TOKENIZER)
    with pytest.raises(ArtifactIntegrityError):
        artifact_put_path(bundle, split=True, expected_sha256="0" * 64)
    assert not artifact_store.exists() or store_files(artifact_store) == {}
    assert not any(Path(settings.ARTIFACT_TMP_DIR).iterdir())


def test_a_missing_chunk_is_a_missing_file(artifact_store: Path, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "base", ENCODER, RNG.normal(size=(256, 3)).astype(np.float32), TOKENIZER)
    stored = artifact_put_path(bundle, split=True)
    (artifact_store / chunk_key(hashlib.sha256(ENCODER.tobytes()).hexdigest())).unlink()
    assert not artifact_exists(stored.sha256)
    with pytest.raises(FileNotFoundError):
        artifact_open(stored.sha256)
    with pytest.raises(FileNotFoundError):
        artifact_open(hashlib.sha256(b"never stored").hexdigest())
    with pytest.raises(FileNotFoundError):
        artifact_size(hashlib.sha256(b"never stored").hexdigest())


def test_a_recipe_that_does_not_add_up_is_refused(artifact_store: Path, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "base", ENCODER, RNG.normal(size=(256, 3)).astype(np.float32), TOKENIZER)
    stored = artifact_put_path(bundle, split=True)
    recipe_path = artifact_store / composite_key(stored.sha256)
    recipe = json.loads(recipe_path.read_text())
    recipe["size"] += 1
    recipe_path.write_text(json.dumps(recipe))
    with pytest.raises(ArtifactError, match="does not add up"):
        artifact_open(stored.sha256)
    recipe["size"] -= 1
    recipe["segments"][0][0] = "../../etc/passwd"
    recipe_path.write_text(json.dumps(recipe))
    with pytest.raises(ArtifactError):
        artifact_size(stored.sha256)


def test_version_files_are_stored_split(artifact_store: Path, tmp_path: Path) -> None:
    """What a fine-tune (and the demo seed) registers: safetensors split, the rest whole."""
    from safetensors.numpy import save_file

    from catalog.services.registry import artifact_files_store

    save_file({"encoder": ENCODER}, str(tmp_path / "model.safetensors"))
    (tmp_path / "tokenizer.json").write_bytes(TOKENIZER)
    entries = {
        e["name"]: e for e in artifact_files_store(directory=tmp_path, names=["model.safetensors", "tokenizer.json"])
    }
    assert artifact_is_composite(entries["model.safetensors"]["sha256"])
    assert not artifact_is_composite(entries["tokenizer.json"]["sha256"])
    out = artifact_materialize(list(entries.values()), tmp_path / "copy")
    for name in entries:
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes()


def test_a_chunk_that_is_already_a_whole_blob_is_a_hard_link(artifact_store: Path, tmp_path: Path) -> None:
    """The version's own tokenizer file and the bundle's tokenizer member: one copy on disk."""
    whole = artifact_put(io.BytesIO(TOKENIZER))
    bundle = make_bundle(tmp_path, "base", ENCODER, RNG.normal(size=(256, 3)).astype(np.float32), TOKENIZER)
    stored = artifact_put_path(bundle, split=True)
    plain, chunk = artifact_store / artifact_key(whole.sha256), artifact_store / chunk_key(whole.sha256)
    assert os.path.samefile(plain, chunk)
    plain.unlink()  # the whole blob deleted: the bundle still reads
    with artifact_open(stored.sha256) as fh:
        assert fh.read() == bundle.read_bytes()
