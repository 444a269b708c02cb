"""The pull CLI against a live server: resolve, download, resume, verify, unpack,
and the ten-line script in docs/ running the pulled bundle."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from catalog.models import Variant, VariantStatus
from catalog.storage import artifact_put_path
from pullcli.__main__ import main as pull
from runners.compile import write_bundle

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def bundle_variant(make_model: Any, tmp_path: Path) -> tuple[Variant, Path]:
    model = make_model("Router")
    weights = tmp_path / "model.onnx"
    weights.write_bytes(bytes(range(256)) * 4000)  # ~1 MB
    bundle = write_bundle(tmp_path / "b.tar", {"model.onnx": weights}, {"model": "router", "labels": ["a", "b"]})
    stored = artifact_put_path(bundle)
    variant = Variant.objects.create(
        version=model.latest_version,
        name="onnx-int8",
        format="onnx",
        precision="int8",
        runtime="onnxruntime",
        hardware="cpu",
        status=VariantStatus.SERVED,
        sha256=stored.sha256,
        size=stored.size,
        latency_p50_ms=2.0,
        latency_p95_ms=3.0,
    )
    return variant, bundle


def args(live_server: Any, out: Path, *extra: str) -> list[str]:
    return [
        "router",
        "--precision",
        "int8",
        "--hardware",
        "cpu",
        "-o",
        str(out),
        "--server",
        live_server.url,
        "--quiet",
        *extra,
    ]


def test_pull_downloads_verifies_and_unpacks(live_server: Any, bundle_variant: Any, tmp_path: Path) -> None:
    variant, bundle = bundle_variant
    out = tmp_path / "out"
    assert pull(args(live_server, out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx"]
    assert (out / "model.onnx").read_bytes() == bytes(range(256)) * 4000
    variant.refresh_from_db()
    assert variant.download_count == 1


def test_pull_resumes_an_interrupted_download(live_server: Any, bundle_variant: Any, tmp_path: Path) -> None:
    variant, bundle = bundle_variant
    out = tmp_path / "out"
    out.mkdir()
    part = out / "router-v1-onnx-int8.tar.part"
    part.write_bytes(bundle.read_bytes()[:400_000])  # what an interrupted run left behind
    assert pull(args(live_server, out)) == 0
    assert (out / "model.onnx").exists()
    variant.refresh_from_db()
    assert variant.download_count == 0  # only the rest was fetched, with a Range request


def test_pull_catches_a_corrupted_byte(
    live_server: Any, bundle_variant: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, bundle = bundle_variant
    out = tmp_path / "out"
    out.mkdir()
    damaged = bytearray(bundle.read_bytes()[:400_000])
    damaged[1234] ^= 0xFF
    part = out / "router-v1-onnx-int8.tar.part"
    part.write_bytes(bytes(damaged))
    assert pull(args(live_server, out)) == 3
    assert "sha256 mismatch" in capsys.readouterr().err
    assert not part.exists()
    assert not (out / "model.onnx").exists()


def test_pull_explains_when_nothing_matches(
    live_server: Any, bundle_variant: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pull(args(live_server, tmp_path / "o", "--max-p95-ms", "1")) == 2
    err = capsys.readouterr().err
    assert "onnx-int8: p95 3.00 ms > 1.0 ms" in err


def test_unpack_refuses_unsafe_members(tmp_path: Path) -> None:
    from pullcli.__main__ import PullError, unpack

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(PullError, match="refusing bundle member"):
        unpack(evil, tmp_path / "x")
    assert not (tmp_path / "escape.txt").exists()


def test_the_ten_line_script_runs_a_real_bundle(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from runners import compile as C
    from runners.families import text_classifier as tc
    from runners.synthetic_text import support_tickets

    rows = support_tickets(120, seed=4, ambiguous_share=0.0)
    tc.fit(
        tiny_bert_dir,
        [t for t, _ in rows],
        [label for _, label in rows],
        tmp_path / "m",
        tc.FitParams(epochs=40, learning_rate=0.05),
    )
    (result,) = C.compile_version(
        family="text-classifier",
        model_dir=tmp_path / "m",
        work=tmp_path / "w",
        eval_inputs=C.EvalInputs(),
        manifest_base={"labels": ["account", "billing", "shipping", "technical"], "preprocessing": {"max_length": 128}},
        specs=C.SPECS[:1],
    )
    from pullcli.__main__ import unpack

    unpack(result.bundle_path, tmp_path / "bundle")  # type: ignore[arg-type]
    assert len((ROOT / "docs" / "run_bundle.py").read_text().splitlines()) == 10
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "docs" / "run_bundle.py"),
            str(tmp_path / "bundle"),
            "My order has not arrived yet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    label, confidence = done.stdout.split()
    assert label in {"account", "billing", "shipping", "technical"}
    assert 0.25 <= float(confidence) <= 1.0
