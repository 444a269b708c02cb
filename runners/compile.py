"""Compiled variants: ONNX export, graph optimisation, int8 quantisation,
parity against the original torch model, latency, and self-contained bundles.

Each public function takes paths and plain data and returns dataclasses; a
CPU worker on the ``compile`` queue calls them through ``compile_version``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import platform
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runners.families.sentence_encoder import TOKENIZER_FILES

OPSET = 17


@dataclass(frozen=True)
class VariantSpec:
    name: str
    precision: str  # fp32 | fp16 | int8
    optimized: bool = False
    quantized: bool = False
    hardware: str = "cpu"
    runtime: str = "onnxruntime"
    format: str = "onnx"


# What every version is compiled to (fp16 needs a CUDA worker; skipped elsewhere).
SPECS = (
    VariantSpec("onnx-fp32", "fp32"),
    VariantSpec("onnx-fp32-optimized", "fp32", optimized=True),
    VariantSpec("onnx-int8", "int8", quantized=True),
    VariantSpec("onnx-int8-optimized", "int8", optimized=True, quantized=True),
    VariantSpec("onnx-fp16-cuda", "fp16", optimized=True, hardware="cuda"),
)


@dataclass
class Parity:
    max_abs_diff: float
    top1_agreement: float | None
    samples: int
    macro_precision: float | None = None
    reference_macro_precision: float | None = None
    passed: bool = False
    reason: str = ""


@dataclass
class Latency:
    batch: int
    sequence_length: int | None
    p50_ms: float
    p95_ms: float
    runs: int


@dataclass
class CompiledVariant:
    spec: VariantSpec
    status: str  # served | rejected | skipped | failed
    reason: str = ""
    bundle_path: Path | None = None
    model_size: int = 0
    parity: Parity | None = None
    latency: list[Latency] = field(default_factory=list)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    toolchain: str = ""
    opset: int = OPSET


@dataclass
class EvalInputs:
    """Held-out inputs to check parity on: texts (text families) or features
    (mlp), and the true class indices when known."""

    texts: list[str] | None = None
    features: np.ndarray | None = None
    targets: list[int] | None = None


# --- thresholds ---------------------------------------------------------------
FP32_MAX_ABS_DIFF = 1e-3
INT8_MIN_TOP1 = 0.99
INT8_MAX_PRECISION_DROP = 0.01


@functools.lru_cache(maxsize=4)
def hardware_fingerprint(provider: str = "CPUExecutionProvider") -> dict[str, Any]:
    """CPU model, cores, ISA flags, GPU name, onnxruntime version and provider
    (read once per process and provider: the machine does not change)."""
    import onnxruntime as ort

    cpu, flags = platform.processor() or "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - a fingerprint never fails the build
        gpu = None
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "neon") if f in flags]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "isa": isa,
        "gpu": gpu,
        "onnxruntime": ort.__version__,
        "execution_provider": provider,
        "machine": platform.machine(),
    }


# --- export -------------------------------------------------------------------


def _torch_module(family: str, model_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The family's inference graph as one torch module, and its I/O description."""
    import torch

    if family == "mlp-classifier":
        from runners.families import mlp_classifier

        net, config = mlp_classifier.load(model_dir)
        mean = torch.tensor(config["mean"], dtype=torch.float32)
        scale = torch.tensor(config["scale"], dtype=torch.float32)

        class Mlp(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net
                self.register_buffer("mean", mean)
                self.register_buffer("scale", scale)

            def forward(self, features: Any) -> Any:
                return torch.softmax(self.net((features - self.mean) / self.scale), dim=-1)

        return Mlp().eval(), {
            "inputs": ["features"],
            "output": "probabilities",
            "labels": config["labels"],
            "input_dim": config["input_dim"],
        }

    from runners.families.sentence_encoder import mean_pool

    if family == "text-classifier":
        from runners.families import text_classifier

        _, encoder, head, config = text_classifier.load(model_dir, device="cpu")

        class Classifier(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder, self.head = encoder, head

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                return torch.softmax(self.head(mean_pool(hidden, attention_mask)), dim=-1)

        return Classifier().eval(), {
            "inputs": ["input_ids", "attention_mask"],
            "output": "probabilities",
            "labels": config["labels"],
            "max_length": config["max_length"],
            "hidden_size": encoder.config.hidden_size,
            "num_heads": encoder.config.num_attention_heads,
        }
    if family == "sequence-classifier":
        from runners.families import sequence_classifier

        model, config = sequence_classifier.load(model_dir)

        class SequenceClassifier(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return sequence_classifier.probabilities(
                    self.model(input_ids=input_ids, attention_mask=attention_mask).logits, config["problem_type"]
                )

        return SequenceClassifier().eval(), {
            "inputs": ["input_ids", "attention_mask"],
            "output": "probabilities",
            "labels": config["labels"],
            "max_length": config["max_length"],
            "hidden_size": config["hidden_size"],
            "num_heads": config["num_heads"],
        }
    if family == "sentence-encoder":
        from runners.families import sentence_encoder

        _, encoder = sentence_encoder.load(model_dir)

        class Encoder(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = encoder

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                return torch.nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)

        return Encoder().eval(), {
            "inputs": ["input_ids", "attention_mask"],
            "output": "embedding",
            "labels": [],
            "max_length": 256,
            "hidden_size": encoder.config.hidden_size,
            "num_heads": encoder.config.num_attention_heads,
        }
    raise ValueError(f"no ONNX export for family {family!r}")


def export_onnx(family: str, model_dir: Path, out: Path) -> dict[str, Any]:
    """Export the family's inference graph to ONNX (opset 17) with dynamic batch
    (and sequence) axes; returns the I/O description."""
    import torch

    module, io_spec = _torch_module(family, model_dir)
    if io_spec["inputs"] == ["features"]:
        args: tuple[Any, ...] = (torch.zeros(2, io_spec["input_dim"]),)
        axes = {"features": {0: "batch"}, io_spec["output"]: {0: "batch"}}
    else:
        ids = torch.ones(2, 8, dtype=torch.long)
        args = (ids, torch.ones_like(ids))
        axes = {
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            io_spec["output"]: {0: "batch"},
        }
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(out),
            input_names=io_spec["inputs"],
            output_names=[io_spec["output"]],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return io_spec


def optimize_bert(src: Path, out: Path, num_heads: int, hidden_size: int) -> None:
    """onnxruntime's transformer fusions (attention, layer norm, GELU) for BERT encoders."""
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1)
    model.save_model_to_file(str(out))


# Quantisation plans, tried in order until one passes parity: everything in
# int8, then int8 with the FFN output projections kept in fp32 (their inputs,
# after GELU, carry outliers that per-tensor activation scales flatten; measured
# on the demo router: 98.75% → 99.25% top-1 agreement on 2,000 sentences).
QUANT_PLANS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("all", ()),
    ("ffn-output-fp32", ("output/dense",)),
)


def quantize_int8(src: Path, out: Path, keep_fp32: tuple[str, ...] = ()) -> list[str]:
    """Dynamic int8 quantisation, weights per channel (per-tensor loses several
    points of top-1 agreement on fine-tuned MiniLM). MatMul/Gemm nodes whose
    name contains one of ``keep_fp32`` (and not "attention") stay in fp32;
    returns their names."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded = []
    if keep_fp32:
        graph = onnx.load(str(src), load_external_data=False).graph
        excluded = [
            n.name
            for n in graph.node
            if n.op_type in ("MatMul", "Gemm") and any(k in n.name for k in keep_fp32) and "attention" not in n.name
        ]
    quantize_dynamic(
        str(src),
        str(out),
        per_channel=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        # Fused (com.microsoft) nodes defeat ONNX shape inference; their
        # tensors are float.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return excluded


def convert_fp16(src: Path, out: Path) -> None:
    """Half-precision weights and compute, float32 inputs and outputs kept (for CUDA)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(out))


# --- running ------------------------------------------------------------------


def _session(path: Path, provider: str = "CPUExecutionProvider") -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=[provider])


def _text_batches(model_dir: Path, texts: list[str], max_length: int, batch: int = 32) -> list[dict[str, np.ndarray]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    out = []
    for start in range(0, len(texts), batch):
        enc = tokenizer(
            texts[start : start + batch], padding=True, truncation=True, max_length=max_length, return_tensors="np"
        )
        out.append(
            {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
        )
    return out


def reference_outputs(family: str, model_dir: Path, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    """The original torch model's outputs on the same batches."""
    import torch

    module, _ = _torch_module(family, model_dir)
    outs = []
    with torch.inference_mode():
        for feed in batches:
            outs.append(module(*[torch.from_numpy(v) for v in feed.values()]).numpy())
    return np.concatenate(outs)


def onnx_outputs(
    path: Path, batches: list[dict[str, np.ndarray]], provider: str = "CPUExecutionProvider"
) -> np.ndarray:
    session = _session(path, provider)
    return np.concatenate([session.run(None, feed)[0] for feed in batches])


def parity_check(
    reference: np.ndarray, candidate: np.ndarray, spec: VariantSpec, targets: list[int] | None, classifier: bool
) -> Parity:
    """Compare a variant's outputs with the original's on the same inputs."""
    from runners.evaluation import classification_report

    diff = float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
    agreement = float((reference.argmax(1) == candidate.argmax(1)).mean()) if classifier else None
    p = Parity(max_abs_diff=diff, top1_agreement=agreement, samples=int(len(reference)))
    if classifier and targets is not None:
        labels = [str(i) for i in range(reference.shape[1])]
        p.reference_macro_precision = classification_report(targets, reference, labels).macro_precision
        p.macro_precision = classification_report(targets, candidate, labels).macro_precision
    if spec.precision == "fp32":
        p.passed = diff <= FP32_MAX_ABS_DIFF
        p.reason = "" if p.passed else f"max |Δ| {diff:.2e} > {FP32_MAX_ABS_DIFF:.0e}"
    else:
        reasons = []
        if classifier:
            if agreement is not None and agreement < INT8_MIN_TOP1:
                reasons.append(f"top-1 agreement {agreement:.2%} < {INT8_MIN_TOP1:.0%}")
            if (
                p.macro_precision is not None
                and p.reference_macro_precision is not None
                and (p.reference_macro_precision - p.macro_precision > INT8_MAX_PRECISION_DROP)
            ):
                reasons.append(
                    f"macro precision {p.macro_precision:.4f} is more than 1 point below {p.reference_macro_precision:.4f}"
                )
        else:
            # An embedding model: the int8 vectors must keep pointing the same way.
            cos = float(
                np.min(
                    np.sum(reference * candidate, axis=1)
                    / (np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1) + 1e-12)
                )
            )
            if cos < 0.99:
                reasons.append(f"minimum cosine similarity {cos:.4f} < 0.99")
        p.passed = not reasons
        p.reason = "; ".join(reasons)
    return p


def measure_latency(
    path: Path,
    make_feed: Callable[[int], dict[str, np.ndarray]],
    batches: tuple[int, ...] = (1, 32),
    runs: int = 30,
    warmup: int = 5,
    provider: str = "CPUExecutionProvider",
    sequence_length: int | None = None,
) -> list[Latency]:
    """p50/p95 per batch size after warm-up, on this machine."""
    session = _session(path, provider)
    out = []
    for batch in batches:
        feed = make_feed(batch)
        for _ in range(warmup):
            session.run(None, feed)
        times = []
        for _ in range(runs if batch == 1 else max(10, runs // 3)):
            t0 = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - t0) * 1000)
        out.append(
            Latency(
                batch=batch,
                sequence_length=sequence_length,
                p50_ms=float(np.percentile(times, 50)),
                p95_ms=float(np.percentile(times, 95)),
                runs=len(times),
            )
        )
    return out


# --- bundles ------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_bundle(out: Path, files: dict[str, Path], manifest: dict[str, Any]) -> Path:
    """A tar of the model file, tokenizer files and ``manifest.json`` (with the
    sha256 of every other member). Deterministic: fixed mtimes and order."""
    manifest = {
        **manifest,
        "files": {name: {"sha256": sha256_file(p), "size": p.stat().st_size} for name, p in sorted(files.items())},
    }
    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size, info.mtime, info.mode = len(body), 0, 0o644
        tar.addfile(info, io.BytesIO(body))
        for name, path in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = path.stat().st_size, 0, 0o644
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
    return out


# --- the whole compile of one version ------------------------------------------------


def compile_version(
    *,
    family: str,
    model_dir: Path,
    work: Path,
    eval_inputs: EvalInputs,
    manifest_base: dict[str, Any],
    specs: tuple[VariantSpec, ...] = SPECS,
    skip: set[str] | None = None,
    corrupt: Callable[[VariantSpec, Path], None] | None = None,
) -> list[CompiledVariant]:
    """Export, optimise, quantise, check parity, time and bundle every spec.

    Args:
        family: the version's family (``text-classifier``, ``sentence-encoder``, ``mlp-classifier``).
        model_dir: the version's files.
        work: a scratch directory.
        eval_inputs: held-out inputs (and labels) for parity.
        manifest_base: schema, labels, preprocessing and metrics to put in every manifest.
        specs: the variants to build.
        skip: names of variants that already exist (not rebuilt).
        corrupt: a test hook that may damage a variant file before its parity check.
    """
    import onnxruntime as ort
    import torch

    work.mkdir(parents=True, exist_ok=True)
    skip = skip or set()
    fp32 = work / "model-fp32.onnx"
    io_spec = export_onnx(family, model_dir, fp32)
    classifier = io_spec["output"] == "probabilities"
    text = io_spec["inputs"] != ["features"]
    if text:
        texts = eval_inputs.texts or [f"sample input number {i} for parity" for i in range(64)]
        batches = _text_batches(model_dir, texts, io_spec["max_length"])
        seq = 64

        def make_feed(batch: int) -> dict[str, np.ndarray]:
            ids = np.full((batch, seq), 1037, dtype=np.int64)
            ids[:, 0], ids[:, -1] = 101, 102
            return {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    else:
        feats = eval_inputs.features
        if feats is None:
            feats = np.random.default_rng(0).normal(size=(64, io_spec["input_dim"])).astype(np.float32)
        batches = [{"features": feats[i : i + 32].astype(np.float32)} for i in range(0, len(feats), 32)]
        seq = None

        def make_feed(batch: int) -> dict[str, np.ndarray]:
            return {"features": np.zeros((batch, io_spec["input_dim"]), dtype=np.float32)}

    reference = reference_outputs(family, model_dir, batches)
    toolchain = f"torch {torch.__version__} / onnxruntime {ort.__version__} / opset {OPSET}"
    results: list[CompiledVariant] = []
    for spec in specs:
        if spec.name in skip:
            continue
        if spec.hardware == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            results.append(
                CompiledVariant(spec, "skipped", "no CUDA execution provider on this worker", toolchain=toolchain)
            )
            continue
        try:
            path = work / f"{spec.name}.onnx"
            source = fp32
            if spec.optimized and text:
                optimize_bert(fp32, work / f"{spec.name}-opt.onnx", io_spec["num_heads"], io_spec["hidden_size"])
                source = work / f"{spec.name}-opt.onnx"
            elif spec.optimized:
                results.append(
                    CompiledVariant(
                        spec, "skipped", "graph fusions apply to transformer encoders only", toolchain=toolchain
                    )
                )
                continue
            provider = "CUDAExecutionProvider" if spec.hardware == "cuda" else "CPUExecutionProvider"
            plans = QUANT_PLANS if (spec.quantized and text) else QUANT_PLANS[:1]
            quantization: dict[str, Any] = {}
            for plan, keep in plans:
                if spec.quantized:
                    kept = quantize_int8(source, path, keep)
                    quantization = {
                        "method": "dynamic",
                        "weights": "int8 per channel",
                        "plan": plan,
                        "fp32_nodes": kept,
                    }
                elif spec.precision == "fp16":
                    convert_fp16(source, path)
                else:
                    path.write_bytes(source.read_bytes())
                if corrupt is not None:
                    corrupt(spec, path)
                candidate = onnx_outputs(path, batches, provider)
                parity = parity_check(reference, candidate, spec, eval_inputs.targets, classifier)
                if parity.passed:
                    break
            variant = CompiledVariant(
                spec,
                "served" if parity.passed else "rejected",
                parity.reason,
                model_size=path.stat().st_size,
                parity=parity,
                toolchain=toolchain + (f" / int8 plan {quantization['plan']}" if quantization else ""),
                fingerprint=dict(hardware_fingerprint(provider)),
            )
            variant.latency = measure_latency(path, make_feed, provider=provider, sequence_length=seq)
            files = {"model.onnx": path}
            if text:
                for name in TOKENIZER_FILES:
                    if (model_dir / name).exists():
                        files[name] = model_dir / name
            manifest = {
                **manifest_base,
                "variant": spec.name,
                "format": spec.format,
                "precision": spec.precision,
                "runtime": spec.runtime,
                "hardware": spec.hardware,
                "opset": OPSET,
                "toolchain": toolchain,
                "inputs": io_spec["inputs"],
                "output": io_spec["output"],
                "parity": asdict(parity),
                "latency": [asdict(lat) for lat in variant.latency],
                "quantization": quantization,
                "measured_on": variant.fingerprint,
            }
            variant.bundle_path = write_bundle(work / f"{spec.name}.tar", files, manifest)
            results.append(variant)
        except Exception as exc:  # one variant failing must not lose the others
            results.append(CompiledVariant(spec, "failed", f"{type(exc).__name__}: {exc}", toolchain=toolchain))
    return results
