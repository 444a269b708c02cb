"""What a fine-tune's compile is handed of its base version, for the int8
plan inheritance (``runners.compile.BaseVariants``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from catalog.services import compile as compile_service
from runners import compile as C


@pytest.mark.django_db
def test_a_compile_gets_the_base_encoder_and_its_served_int8_bundles(
    tiny_encoder: Any, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    from catalog.models import Variant, VariantStatus
    from catalog.storage import artifact_put_path

    no_base: Any = SimpleNamespace(base_version=None)
    assert compile_service._base_variants(no_base, tmp_path / "none") is None
    child: Any = SimpleNamespace(base_version=tiny_encoder)
    assert compile_service._base_variants(child, tmp_path / "nothing-served") is None  # no int8 variant yet

    (tmp_path / "model.onnx").write_bytes(b"graph")
    bundle = C.write_bundle(tmp_path / "bundle.tar", {"model.onnx": tmp_path / "model.onnx"}, {"variant": "x"})
    stored = artifact_put_path(bundle)
    common = {"version": tiny_encoder, "hardware": "cpu", "format": "onnx", "runtime": "onnxruntime"}
    Variant.objects.create(
        **common, name="onnx-int8", precision="int8", status=VariantStatus.SERVED, sha256=stored.sha256
    )
    Variant.objects.create(
        **common, name="onnx-int8-optimized", precision="int8", status=VariantStatus.REJECTED, sha256=stored.sha256
    )
    Variant.objects.create(
        **common, name="onnx-fp32", precision="fp32", status=VariantStatus.SERVED, sha256=stored.sha256
    )

    base = compile_service._base_variants(child, tmp_path / "base")
    assert base is not None
    assert base.label == f"{tiny_encoder.registered_model.slug} v{tiny_encoder.version}"
    assert set(base.bundles) == {"onnx-int8"}  # served int8 only
    assert base.bundles["onnx-int8"].read_bytes() == bundle.read_bytes()
    assert C.encoder_digest(base.model_dir) == C.encoder_digest(tiny_bert_dir)


@pytest.mark.django_db
def test_a_base_whose_bundle_is_gone_leaves_the_compile_to_plan_from_scratch(tiny_encoder: Any, tmp_path: Path) -> None:
    """Inheriting is an optimisation: a served int8 bundle missing from the store
    (deleted, or a lost chunk) gives no base, not a failed compile."""
    from catalog.models import Variant, VariantStatus

    Variant.objects.create(
        version=tiny_encoder,
        hardware="cpu",
        format="onnx",
        runtime="onnxruntime",
        name="onnx-int8",
        precision="int8",
        status=VariantStatus.SERVED,
        sha256="0" * 64,  # nothing stored under this digest
    )
    child: Any = SimpleNamespace(base_version=tiny_encoder)
    assert compile_service._base_variants(child, tmp_path / "base") is None
