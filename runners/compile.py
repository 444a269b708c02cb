"""Compiled variants: ONNX export, graph optimisation, int8 quantisation,
parity against the original torch model, latency, and self-contained bundles.

Each public function takes paths and plain data and returns dataclasses; a
CPU worker on the ``compile`` queue calls them through ``compile_version``.
"""

from __future__ import annotations

import contextlib
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
    flips: int | None = None  # inputs whose top-1 class differs from the original's
    allowed_flips: int | None = None  # the most the top-1 threshold lets through on this many samples
    macro_precision: float | None = None
    reference_macro_precision: float | None = None
    passed: bool = False
    reason: str = ""


@dataclass
class Latency:
    batch: int
    sequence_length: int | None  # padded length ("fixed"); median tokens per input ("real")
    p50_ms: float
    p95_ms: float
    runs: int
    # "fixed": every input padded to ``sequence_length``; "real": the held-out
    # inputs at their own token lengths, batched by length (each batch padded to
    # its longest), one call per batch.
    lengths: str = "fixed"


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
    quantization: dict[str, Any] = field(default_factory=dict)
    session_options: dict[str, Any] = field(default_factory=dict)  # what it was timed with (the manifest's)


@dataclass
class EvalInputs:
    """Held-out inputs to check parity on: texts (text families) or features
    (mlp), and the true class indices when known; ``calibration_texts`` are
    inputs to calibrate int8 on (the training part, never the held-out one)."""

    texts: list[str] | None = None
    features: np.ndarray | None = None
    targets: list[int] | None = None
    calibration_texts: list[str] | None = None


# Spinning intra-op threads (busy-waiting between parallel sections) only where
# there are cores to spare; measured on 2 shared cores: see session_options.
SPIN_MIN_CORES = 4
# ``choose_threads`` keeps the machine's thread count unless one thread is
# faster by more than this factor (the geometric mean of the paired ratios).
# The two wrong choices do not cost the same: a single thread chosen under a
# passing load ran batch 32 at 271 ms where two threads take ~145 ms once the
# load is gone (docs/BENCHMARKS.md, run 6, seed 0: chosen at ratio 1.07); a
# second thread under load costs 5-25% (ratios 1.03-1.26 measured at load 3-5).
THREADS_ONE_WINS_BY = 1.15

# --- thresholds ---------------------------------------------------------------
FP32_MAX_ABS_DIFF = 1e-3
INT8_MIN_TOP1 = 0.99
INT8_MAX_PRECISION_DROP = 0.01


@functools.lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """This machine's CPU model name and flags from ``/proc/cpuinfo`` (empty
    when it cannot be read). No torch: the web process uses it too."""
    cpu, flags = "", frozenset[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = frozenset(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return cpu, flags


@functools.lru_cache(maxsize=4)
def hardware_fingerprint(provider: str = "CPUExecutionProvider") -> dict[str, Any]:
    """CPU model, cores, ISA flags, GPU name, onnxruntime version and provider
    (read once per process and provider: the machine does not change)."""
    import onnxruntime as ort

    cpu, flags = cpu_info()
    cpu = cpu or platform.processor() or ""
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


def _eager_attention(model: Any) -> Any:
    """Attention written out as MatMul → Softmax → MatMul (transformers' "eager"
    implementation) instead of ``scaled_dot_product_attention``: the exporter
    turns SDPA into a NaN-guarded subgraph (IsNaN, Where) that onnxruntime's
    attention fusion does not recognise, which left the "optimized" graph with
    unfused attention and slower than the plain one. Same arithmetic."""
    if hasattr(model, "set_attn_implementation"):
        # A model without an eager path keeps its own.
        with contextlib.suppress(ValueError, NotImplementedError):
            model.set_attn_implementation("eager")
    return model


def _torch_module(family: str, model_dir: Path, for_export: bool = True) -> tuple[Any, dict[str, Any]]:
    """The family's inference graph as one torch module, and its I/O description.
    ``for_export``: attention in its exportable, fusable form (``_eager_attention``);
    otherwise the model exactly as torch runs it (the parity reference, the
    benchmark's eager baseline)."""
    import torch

    prepare = _eager_attention if for_export else (lambda m: m)

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
        prepare(encoder)

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
        prepare(model)

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
        prepare(encoder)

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


def _opset(model: Any, domain: str = "") -> int:
    return next((o.version for o in model.opset_import if o.domain in ({"", "ai.onnx"} if not domain else {domain})), 0)


def fast_layer_norms(model: Any) -> int:
    """Rewrite every layer norm over the last axis — ``LayerNormalization`` and
    onnxruntime's fused ``SkipLayerNormalization`` (input + skip [+ bias]) — as
    Add → ReduceMean → Sub → ``SimplifiedLayerNormalization`` (RMS norm) → Add
    beta: the same function (RMS norm of the centred input is layer norm), in
    place; returns how many were rewritten.

    Why: onnxruntime's CPU kernel for (Skip)LayerNormalization is several
    times slower than its RMS-norm kernel and than torch (measured here on
    32 × 64 × 384: SkipLayerNormalization 8.3 ms, this rewrite 1.4 ms, torch
    ``layer_norm`` 0.5 ms at one thread), and the 12 layer norms were ~20%
    of int8 MiniLM's time. A node whose mean or inverse-deviation output is
    read stays as it is; ``EmbedLayerNormalization`` too (its own kernel).
    The rewritten graph needs onnxruntime (``SimplifiedLayerNormalization`` is
    its operator in the ONNX domain), as the fused graphs already do."""
    from onnx import helper, numpy_helper

    read = {x for n in model.graph.node for x in n.input} | {o.name for o in model.graph.output}
    opset = _opset(model)
    new_nodes: list[Any] = []
    done = 0

    def mean(x: str, y: str, name: str) -> Any:
        if opset >= 18:  # axes became an input
            axes = f"{name}/axes"
            if axes not in {i.name for i in model.graph.initializer}:
                model.graph.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), axes))
            return helper.make_node("ReduceMean", [x, axes], [y], name=name, keepdims=1)
        return helper.make_node("ReduceMean", [x], [y], name=name, axes=[-1], keepdims=1)

    for n in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "SkipLayerNormalization" and n.domain == "com.microsoft":
            stats, summed = list(n.output[1:3]), n.output[3] if len(n.output) > 3 else ""
            # The bias first: an Add of a constant right after a projection is
            # folded into onnxruntime's DynamicQuantizeMatMul (its bias input).
            terms = [n.input[0], *([n.input[4]] if len(n.input) > 4 and n.input[4] else []), n.input[1]]
            gamma, beta = n.input[2], n.input[3] if len(n.input) > 3 else ""
        elif n.op_type == "LayerNormalization" and n.domain in ("", "ai.onnx") and attrs.get("axis", -1) == -1:
            stats, summed = list(n.output[1:3]), ""
            terms = [n.input[0]]
            gamma, beta = n.input[1], n.input[2] if len(n.input) > 2 else ""
        else:
            new_nodes.append(n)
            continue
        if any(s and s in read for s in stats):
            new_nodes.append(n)
            continue
        base, y = n.name or n.output[0], n.output[0]
        x = terms[0]
        for i, term in enumerate(terms[1:]):
            last = i == len(terms) - 2
            total = (summed or f"{base}/sum") if last else f"{base}/sum{i}"
            new_nodes.append(helper.make_node("Add", [x, term], [total], name=f"{base}/Add{i}"))
            x = total
        new_nodes += [
            mean(x, f"{base}/mean", f"{base}/ReduceMean"),
            helper.make_node("Sub", [x, f"{base}/mean"], [f"{base}/centred"], name=f"{base}/Sub"),
            helper.make_node(
                "SimplifiedLayerNormalization",
                [f"{base}/centred", gamma],
                [f"{base}/normed" if beta else y],
                name=f"{base}/RMSNorm",
                axis=-1,
                epsilon=float(attrs.get("epsilon", 1e-5)),
                stash_type=1,
            ),
        ]
        if beta:
            new_nodes.append(helper.make_node("Add", [f"{base}/normed", beta], [y], name=f"{base}/AddBeta"))
        done += 1
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    return done


def rewrite_layer_norms(src: Path, out: Path) -> int:
    """``fast_layer_norms`` from file to file; returns how many were rewritten."""
    import onnx

    model = onnx.load(str(src))
    done = fast_layer_norms(model)
    onnx.save(model, str(out))
    return done


# --- int8 ---------------------------------------------------------------------

# Nodes whose second input is a weight that dynamic quantisation stores in int8
# (MatMul: projections of the plain graph; Attention: the fused Q/K/V projection).
WEIGHT_OPS = ("MatMul", "Attention")
# The legacy name-pattern plans (kept for callers that build an int8 graph
# without calibration data, e.g. the search encoder).
QUANT_PLANS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("all", ()),
    ("ffn-output-fp32", ("output/dense",)),
)
CALIBRATION_ROWS = 256  # training inputs that calibrate smoothing and rank node sensitivity


@dataclass(frozen=True)
class QuantPlan:
    """One way to build the int8 graph (see ``prepare_int8``): ``smoothing``
    SmoothQuant α (None: none); ``outlier_channels`` the k largest channels of
    outlier-heavy MatMul inputs computed in fp32 (0: none); ``embeddings``
    whether the embedding tables are int8 too; ``keep_fp32`` how many of the
    weight nodes whose int8 error moves the output most (``node_sensitivity``)
    stay fp32; ``outlier_scope`` which activations may be split
    (``prepare_int8``): "all", or "unshared" — only those nothing but the
    weight nodes reads."""

    name: str
    smoothing: float | None = None
    outlier_channels: int = 0
    outlier_scope: str = "all"
    embeddings: bool = True
    keep_fp32: int = 0
    inherited: bool = False  # the base version's plan and rewrite (``InheritedPlan``)


# Tried in order until one passes parity: fastest and smallest first. Measured
# on a MiniLM fine-tuned with all layers unfrozen (Debian descriptions, 1,200
# held-out sentences; docs/BENCHMARKS.md): plain dynamic int8 31 flips
# (97.4%), smoothed α 0.5 / 0.75 / 0.95: 44 / 14 / 21, outlier channels (k 4)
# alone 11, with α 0.75 on the rest 10, and fp32 embeddings on top 11 flips at
# 40% less KL divergence from fp32. The "unshared" split (only the GELU
# outputs in BERT; the layer-norm outputs, also the residual, smoothed) is as
# accurate on the top-2-layer fine-tunes (7 / 10 / 7 flips vs 6 / 11 / 9 for
# the full split, fp32 embeddings) and ~9% faster at batch 32: a split
# layer-norm output costs a 1536-wide fp32 MatMul and Add per layer.
INT8_PLANS = (
    QuantPlan("int8"),
    QuantPlan("int8-smoothed", smoothing=0.75),
    QuantPlan("int8-outliers-unshared", smoothing=0.75, outlier_channels=4, outlier_scope="unshared"),
    QuantPlan(
        "int8-outliers-unshared-fp32-embeddings",
        smoothing=0.75,
        outlier_channels=4,
        outlier_scope="unshared",
        embeddings=False,
    ),
    QuantPlan("int8-outliers", smoothing=0.75, outlier_channels=4),
    QuantPlan("int8-outliers-fp32-embeddings", smoothing=0.75, outlier_channels=4, embeddings=False),
    QuantPlan("int8-outliers-1-fp32", smoothing=0.75, outlier_channels=4, embeddings=False, keep_fp32=1),
    QuantPlan("int8-outliers-3-fp32", smoothing=0.75, outlier_channels=4, embeddings=False, keep_fp32=3),
)


@dataclass
class Rewrite:
    """What ``prepare_int8`` did to each activation of a graph, read back from
    the graph itself (its int8 form keeps the fp32 rewrite constants):
    ``smoothing`` the 1/s array of each smoothed activation, ``outliers`` the
    channels split off each decomposed one; ``tensors`` every tensor name of
    the graph (an activation it has but neither dict names was left alone)."""

    tensors: frozenset[str]
    smoothing: dict[str, np.ndarray]
    outliers: dict[str, np.ndarray]

    @classmethod
    def read(cls, model: Any) -> Rewrite:
        from onnx import numpy_helper

        def by_suffix(suffix: str) -> dict[str, np.ndarray]:
            return {
                i.name[: -len(suffix)]: numpy_helper.to_array(i)
                for i in model.graph.initializer
                if i.name.endswith(suffix)
            }

        names = {x for n in model.graph.node for x in (*n.input, *n.output) if x}
        names |= {i.name for i in model.graph.input}
        return cls(frozenset(names), by_suffix("/smooth_scale"), by_suffix("/outlier_channels"))


# A head's tensors (a new one per fine-tune), left out when comparing encoders;
# so are integer buffers: only floating-point tensors are weights.
HEAD_TENSOR_PREFIXES = ("classifier.", "pre_classifier.", "score.")
WEIGHT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})


def encoder_digest(model_dir: Path) -> str | None:
    """sha256 over the encoder's weights — (dtype, shape, sha256 of the bytes)
    of every floating-point tensor in ``model.safetensors`` but a head's, sorted, so
    names and file layout do not matter; None without that file. Two versions
    with the same digest have byte-identical encoder weights (a head-only
    fine-tune and its base)."""
    from runners.safetensors_info import safetensors_header_read

    path = model_dir / "model.safetensors"
    if not path.is_file():
        return None
    entries = []
    with open(path, "rb") as fh:
        header = safetensors_header_read(fh)
        start = fh.tell()
        for name, spec in header.items():
            if name == "__metadata__" or name.startswith(HEAD_TENSOR_PREFIXES):
                continue
            if spec["dtype"] not in WEIGHT_DTYPES:
                continue  # integer buffers (BERT's saved position_ids: older files have it, re-saved ones not)
            a, b = (int(x) for x in spec["data_offsets"])
            fh.seek(start + a)
            digest, left = hashlib.sha256(), b - a
            while left > 0:
                block = fh.read(min(left, 1 << 20))
                if not block:
                    raise ValueError(f"{path}: tensor {name} runs past the end of the file")
                digest.update(block)
                left -= len(block)
            entries.append(f"{spec['dtype']} {spec['shape']} {digest.hexdigest()}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()


@dataclass
class BaseVariants:
    """The version this one was fine-tuned from, for int8 plan inheritance:
    ``label`` (e.g. "all-minilm-l6-v2 v1"), ``model_dir`` holding its
    ``model.safetensors``, and its served int8 bundles by variant name."""

    label: str
    model_dir: Path
    bundles: dict[str, Path]


@dataclass
class InheritedPlan:
    """A base variant's int8 plan, to be tried first on a version whose encoder
    weights are the base's own: its plan (α, outlier k, embeddings), the
    nodes it kept fp32 and its rewrite constants (``Rewrite``). Rebuilt with
    them, the int8 encoder weights come out byte for byte the base's (the
    store then holds them once)."""

    source: dict[str, Any]
    plan: QuantPlan
    fp32_nodes: list[str]
    rewrite: Rewrite

    @classmethod
    def read(cls, bundle: Path, label: str) -> InheritedPlan | None:
        """The plan recorded in ``bundle`` (a compiled int8 variant's tar);
        None when it records none."""
        import onnx

        with tarfile.open(bundle) as tar:
            manifest_file, model_file = tar.extractfile("manifest.json"), tar.extractfile("model.onnx")
            if manifest_file is None or model_file is None:
                return None
            manifest = json.load(manifest_file)
            model = onnx.load_from_string(model_file.read())
        q = manifest.get("quantization") or {}
        if "plan" not in q:
            return None
        smoothing = (q.get("smoothing") or {}).get("alpha")
        split = q.get("outlier_channels") or {}
        plan = QuantPlan(
            str(q["plan"]),
            smoothing=smoothing,
            outlier_channels=int(split.get("k", 0)),
            outlier_scope=str(split.get("scope", "all")),
            embeddings=q.get("embeddings") != "fp32",
        )
        source = {
            "base": label,
            "variant": manifest.get("variant"),
            "plan": q["plan"],
            "bundle_sha256": sha256_file(bundle),
        }
        return cls(source, plan, [str(n) for n in q.get("fp32_nodes", [])], Rewrite.read(model))

    def plans(self, more_fp32: tuple[int, ...] = (0, 1, 3)) -> tuple[QuantPlan, ...]:
        """The base's plan, then the same with the next most sensitive nodes fp32 too."""
        return tuple(
            QuantPlan(
                f"inherited-{self.plan.name}" + (f"+{k}-fp32" if k else ""),
                smoothing=self.plan.smoothing,
                outlier_channels=self.plan.outlier_channels,
                outlier_scope=self.plan.outlier_scope,
                embeddings=self.plan.embeddings,
                keep_fp32=k,
                inherited=True,
            )
            for k in more_fp32
        )


def weight_nodes(model: Any) -> list[Any]:
    """The graph's nodes that int8 quantisation applies to (``WEIGHT_OPS`` with a constant weight)."""
    constants = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type in WEIGHT_OPS and len(n.input) > 1 and n.input[1] in constants]


def quantize_int8(
    src: Path,
    out: Path,
    keep_fp32: tuple[str, ...] = (),
    *,
    exclude: tuple[str, ...] | list[str] = (),
    embeddings: bool = True,
) -> list[str]:
    """Dynamic int8 quantisation: weights int8 per output channel, activations
    uint8 with a range measured on each call; the embedding tables int8 too
    unless ``embeddings`` is False. Nodes named in ``exclude``, and weight
    nodes whose name contains one of ``keep_fp32`` (and not "attention"), stay
    in fp32; returns their names."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded = list(exclude)
    if keep_fp32:
        graph = onnx.load(str(src), load_external_data=False).graph
        excluded += [
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
        op_types_to_quantize=None if embeddings else list(WEIGHT_OPS),
        # Fused (com.microsoft) nodes defeat ONNX shape inference; their
        # tensors are float.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return excluded


def _with_outputs(model: Any, names: list[str]) -> Any:
    """A copy of ``model`` that also outputs the named intermediate tensors."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    have = {o.name for o in copy.graph.output}
    for name in names:
        if name not in have:
            copy.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return copy


def activation_ranges(src: Path, batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per channel (last axis), the largest |value| each weight node's input
    activation takes on the calibration batches, keyed by tensor name."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(src))
    names = sorted({n.input[0] for n in weight_nodes(model)})
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        _with_outputs(model, names).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    ranges: dict[str, np.ndarray] = {}
    for feed in batches:
        for name, value in zip(names, session.run(names, feed), strict=True):
            peak = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            ranges[name] = np.maximum(ranges[name], peak) if name in ranges else peak
    return ranges


def _activation_groups(model: Any) -> dict[str, list[Any]]:
    """Weight nodes by the activation they read (a weight shared by several nodes is left out)."""
    readers: dict[str, int] = {}
    for n in model.graph.node:
        for name in n.input:
            readers[name] = readers.get(name, 0) + 1
    groups: dict[str, list[Any]] = {}
    for n in weight_nodes(model):
        if readers.get(n.input[1], 0) == 1:
            groups.setdefault(n.input[0], []).append(n)
    return groups


def outlier_ratio(peaks: np.ndarray) -> float:
    """How far an activation's largest channel stands out: max / median of the per-channel peaks."""
    return float(peaks.max() / max(float(np.median(peaks)), 1e-9))


def prepare_int8(
    src: Path,
    out: Path,
    batches: list[dict[str, np.ndarray]],
    *,
    smoothing: float | None = None,
    outlier_channels: int = 0,
    min_outlier_ratio: float = 6.0,
    outlier_scope: str = "all",
    fixed: Rewrite | None = None,
) -> dict[str, Any]:
    """Rewrite the fp32 graph so that dynamic int8 loses less — the same
    function in fp32 (outputs equal up to rounding). Dynamic quantisation gives
    each activation ONE uint8 scale per call; a few channels ten or twenty
    times larger than the rest (the residual stream's and GELU's outliers in
    BERT: measured 13–18× on fine-tuned MiniLM) then leave the other channels a
    handful of levels, and that activation error — not the weights' — is what
    flips predictions. Per activation read by weight nodes, on the calibration
    batches' per-channel peaks:

    * ``outlier_channels`` (LLM.int8(), Dettmers et al., 2022): where the
      outlier ratio is at least ``min_outlier_ratio`` and every reader is a
      MatMul, the k largest channels are split off and multiplied in fp32
      (Gather → a k-row MatMul → Add), the int8 MatMul reads the activation
      with them zeroed (Mul by a 0/1 mask) and a weight whose k rows are zero.
      ``outlier_scope`` "unshared": only activations that nothing but those
      MatMuls reads (in BERT the GELU outputs, read by the FFN output
      projection; a layer-norm output is also the residual, and its split —
      a k-row MatMul and an Add as wide as the 1536-wide FFN input
      projection's output — costs more): the others are smoothed.
    * ``smoothing`` α (SmoothQuant, Xiao et al., 2023), for the other
      activations: divided channel by channel by s = max|x|^α / max|w|^(1-α)
      (a Mul), the rows of the weights that read them multiplied by s — the
      outliers move into the weights, which are quantised per output channel.
      This is the only remedy for a fused Attention node, whose projection
      cannot be split.

    ``fixed``: the rewrite another graph with the same encoder got (read back
    from its int8 graph, ``Rewrite.read``): an activation it split keeps the
    same channels, one it smoothed the same scales, one it left alone stays
    alone — so the rewritten weights, and their int8 form, are the same bytes.
    Only activations that graph does not have (a new head's input) are
    decided from ``batches`` as above.

    Returns what was done; ``fp32_nodes`` are the added fp32 MatMuls (to be
    left out of quantisation)."""
    import onnx
    from onnx import helper, numpy_helper

    if outlier_scope not in ("all", "unshared"):
        raise ValueError(f"outlier_scope {outlier_scope!r}: 'all' or 'unshared'")
    model = onnx.load(str(src))
    ranges = activation_ranges(src, batches)
    initializers = {i.name: i for i in model.graph.initializer}
    readers: dict[str, int] = {o.name: 1 for o in model.graph.output}
    for n in model.graph.node:
        for name in n.input:
            readers[name] = readers.get(name, 0) + 1
    after_tensor: dict[str, list[Any]] = {}
    after_node: dict[str, list[Any]] = {}
    record: dict[str, Any] = {
        "decomposed": [],
        "smoothed": [],
        "fp32_nodes": [],
        "outlier_ratios": {},
        "inherited": 0,
    }

    def weight(n: Any) -> np.ndarray:
        return numpy_helper.to_array(initializers[n.input[1]]).copy()

    def set_weight(n: Any, value: np.ndarray) -> None:
        initializers[n.input[1]].CopyFrom(numpy_helper.from_array(value.astype(np.float32), n.input[1]))

    def constant(value: np.ndarray, name: str) -> str:
        model.graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    for activation, nodes in _activation_groups(model).items():
        peaks = ranges[activation]
        ratio = outlier_ratio(peaks)
        record["outlier_ratios"][activation] = round(ratio, 1)
        top: np.ndarray | None = None
        inverse_scale: np.ndarray | None = None
        if fixed is not None and activation in fixed.tensors:
            # Decided by the other graph's rewrite, whatever this calibration says.
            record["inherited"] += 1
            top = fixed.outliers.get(activation)
            inverse_scale = fixed.smoothing.get(activation)
            if top is not None and not all(n.op_type == "MatMul" for n in nodes):
                raise ValueError(f"{activation}: outlier channels recorded for a non-MatMul reader")
        elif (
            outlier_channels > 0
            and ratio >= min_outlier_ratio
            and all(n.op_type == "MatMul" for n in nodes)
            and outlier_channels < len(peaks)
            and (outlier_scope == "all" or readers.get(activation, 0) == len(nodes))
        ):
            top = np.sort(np.argsort(-peaks)[:outlier_channels]).astype(np.int64)
        elif smoothing is not None:
            weights = [weight(n) for n in nodes]
            w_peak = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
            scale = np.clip(
                np.maximum(peaks, 1e-5) ** smoothing / np.maximum(w_peak, 1e-5) ** (1 - smoothing), 1e-2, 1e2
            )
            inverse_scale = (1.0 / scale).astype(np.float32)
        if top is not None:
            mask = np.ones(len(peaks), dtype=np.float32)
            mask[top] = 0.0
            inliers, outliers = f"{activation}/inliers", f"{activation}/outliers"
            after_tensor[activation] = [
                helper.make_node(
                    "Mul",
                    [activation, constant(mask, f"{activation}/inlier_mask")],
                    [inliers],
                    name=f"{activation}/InlierMul",
                ),
                helper.make_node(
                    "Gather",
                    [activation, constant(top, f"{activation}/outlier_channels")],
                    [outliers],
                    name=f"{activation}/OutlierGather",
                    axis=-1,
                ),
            ]
            for n in nodes:
                w = weight(n)
                rows = constant(w[top].astype(np.float32), f"{n.input[1]}/outlier_rows")
                w[top] = 0.0
                set_weight(n, w)
                y = n.output[0]
                n.input[0], n.output[0] = inliers, f"{y}/inlier_part"
                matmul = helper.make_node(
                    "MatMul", [outliers, rows], [f"{y}/outlier_part"], name=f"{n.name}/OutlierMatMul"
                )
                add = helper.make_node("Add", [n.output[0], matmul.output[0]], [y], name=f"{n.name}/OutlierAdd")
                after_node[n.name] = [matmul, add]
                record["fp32_nodes"].append(matmul.name)
            record["decomposed"].append(activation)
        elif inverse_scale is not None:
            # The graph keeps only 1/s (the activation's Mul); the weights are
            # divided by exactly that float32 array, so that the rewrite can be
            # redone bit for bit from the graph alone (``Rewrite.read``).
            smoothed = f"{activation}/smoothed"
            inverse = constant(inverse_scale.astype(np.float32), f"{activation}/smooth_scale")
            after_tensor[activation] = [
                helper.make_node("Mul", [activation, inverse], [smoothed], name=f"{activation}/SmoothQuantMul")
            ]
            for n in nodes:
                set_weight(n, weight(n) / inverse_scale[:, None])
                n.input[0] = smoothed
            record["smoothed"].append(activation)
    inputs = {i.name for i in model.graph.input}
    ordered = [m for a in after_tensor if a in inputs for m in after_tensor[a]]
    for n in model.graph.node:
        ordered.append(n)
        for o in n.output:
            ordered += after_tensor.get(o, [])
        ordered += after_node.get(n.name, [])
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    onnx.save(model, str(out))
    return record


def smooth_activations(src: Path, out: Path, batches: list[dict[str, np.ndarray]], alpha: float) -> dict[str, Any]:
    """SmoothQuant on every activation read by weight nodes (``prepare_int8`` with smoothing only)."""
    record = prepare_int8(src, out, batches, smoothing=alpha)
    ratios = record["outlier_ratios"].values()
    return {
        "alpha": alpha,
        "activations": len(record["smoothed"]),
        "max_outlier_ratio": round(max(ratios, default=0.0), 1),
    }


def _kl(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean KL(reference ‖ candidate) over rows of probabilities (for
    embeddings: mean 1 - cosine)."""
    r = reference.astype(np.float64).reshape(len(reference), -1)
    c = candidate.astype(np.float64).reshape(len(candidate), -1)
    if np.allclose(r.sum(axis=1), 1.0, atol=1e-3) and (r >= 0).all():
        r, c = np.clip(r, 1e-9, 1.0), np.clip(c, 1e-9, 1.0)
        return float(np.mean(np.sum(r * (np.log(r) - np.log(c)), axis=1)))
    cos = np.sum(r * c, axis=1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1) + 1e-12)
    return float(np.mean(1.0 - cos))


def node_sensitivity(
    src: Path, work: Path, batches: list[dict[str, np.ndarray]], options: dict[str, Any] | None = None
) -> list[tuple[str, float]]:
    """How much each weight node's int8 error alone moves the output: the mean
    KL divergence from the fp32 output on the calibration batches when only
    that node is int8. Largest first.

    Measured in one session: every weight node gets an fp32 twin and a
    ``Where`` on a boolean graph input picks, per node, the int8 or the fp32
    result — so the sweep costs one quantisation and one pass per node."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    targets = [n.name for n in weight_nodes(model)]
    position = {name: i for i, name in enumerate(targets)}
    model.graph.input.append(helper.make_tensor_value_info("keep_fp32", onnx.TensorProto.BOOL, [len(targets)]))
    nodes, twins = [], []
    for n in model.graph.node:
        nodes.append(n)
        if n.name not in position:
            continue
        out = n.output[0]
        twin = onnx.NodeProto()
        twin.CopyFrom(n)
        twin.name = f"{n.name}/fp32_twin"
        twin.output[0] = f"{out}/fp32"
        for k in range(1, len(twin.output)):  # optional extra outputs (none in these graphs) stay the original's
            twin.output[k] = ""
        n.output[0] = f"{out}/int8"
        index = numpy_helper.from_array(np.array(position[n.name], dtype=np.int64), f"{n.name}/gate_index")
        model.graph.initializer.append(index)
        gate = helper.make_node("Gather", ["keep_fp32", index.name], [f"{n.name}/gate"], name=f"{n.name}/gate", axis=0)
        pick = helper.make_node("Where", [gate.output[0], twin.output[0], n.output[0]], [out], name=f"{n.name}/pick")
        nodes += [twin, gate, pick]
        twins.append(twin.name)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    gated, gated_int8 = work / "sensitivity-fp32.onnx", work / "sensitivity-int8.onnx"
    onnx.save(model, str(gated))
    quantize_int8(gated, gated_int8, exclude=twins)
    session = _session(gated_int8, options=options)

    def outputs(keep: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run(None, {**feed, "keep_fp32": keep})[0] for feed in batches])

    reference = outputs(np.ones(len(targets), dtype=bool))
    scores = []
    for i, name in enumerate(targets):
        keep = np.ones(len(targets), dtype=bool)
        keep[i] = False
        scores.append((name, _kl(reference, outputs(keep))))
    gated.unlink()
    gated_int8.unlink()
    return sorted(scores, key=lambda s: -s[1])


def convert_fp16(src: Path, out: Path) -> None:
    """Half-precision weights and compute, float32 inputs and outputs kept (for CUDA)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(out))


# --- running ------------------------------------------------------------------


def session_options(provider: str = "CPUExecutionProvider") -> dict[str, Any]:
    """The onnxruntime session settings variants are timed (and should be served)
    with on this machine; recorded in every manifest.

    Intra-op threads: the cores this process may run on (``sched_getaffinity``),
    at most 8 — past that, single-input latency no longer improves for a model
    this size. One inter-op thread (the graphs are sequential). Spinning (idle
    intra-op threads busy-wait for the next parallel section): SPIN_MIN_CORES."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, min(cores, 8))
    return {
        "provider": provider,
        "intra_op_num_threads": threads,
        "inter_op_num_threads": 1,
        "allow_spinning": cores >= SPIN_MIN_CORES,
        "graph_optimization_level": "ORT_ENABLE_ALL",
    }


def choose_threads(
    path: Path,
    workloads: dict[str, list[dict[str, np.ndarray]]],
    options: dict[str, Any],
    rounds: int = 5,
) -> dict[str, Any]:
    """``options`` with the intra-op thread count this variant runs fastest
    with here, measured: one thread and ``options``' own count, each workload
    (a list of inputs, run one after another) timed in rounds that visit both
    counts in turn, the order alternating from round to round. Per workload
    the median over rounds of the paired ratio (more threads / one thread,
    timed in the same round: a change of load between rounds falls on both
    sides of a ratio); more threads win when the geometric mean of those
    medians over the workloads is at most ``THREADS_ONE_WINS_BY`` (one thread
    must win clearly: the choice outlives the load it was measured under). On
    cores shared with other work, waking a second thread for every parallel
    section can cost more than it brings (measured here at load 3-5: int8 at
    padded length 64 up to 25% faster on one thread; which count wins varies
    with the input shapes and the load). What was measured is recorded under
    ``threads_measured`` (median ms per pass, and the ratios)."""
    threads = int(options["intra_op_num_threads"])
    if threads <= 1 or not workloads:
        return options
    candidates = [threads, 1]
    sessions = {t: _session(path, options={**options, "intra_op_num_threads": t}) for t in candidates}
    times: dict[tuple[int, str], list[float]] = {(t, w): [] for t in candidates for w in workloads}
    for t in candidates:
        sessions[t].run(None, next(iter(workloads.values()))[0])
    for r in range(rounds):
        for t in candidates if r % 2 == 0 else candidates[::-1]:
            for w, feeds in workloads.items():
                started = time.perf_counter()
                for feed in feeds:
                    sessions[t].run(None, feed)
                times[(t, w)].append((time.perf_counter() - started) * 1000)
    p50 = {key: float(np.median(v)) for key, v in times.items()}
    ratio = {
        w: float(np.median(np.array(times[(threads, w)]) / np.maximum(np.array(times[(1, w)]), 1e-9)))
        for w in workloads
    }
    score = float(np.exp(np.mean(np.log(list(ratio.values())))))
    best = threads if score <= THREADS_ONE_WINS_BY else 1
    measured: dict[str, Any] = {str(t): {w: round(p50[(t, w)], 2) for w in workloads} for t in candidates}
    measured["ratio"] = {w: round(v, 3) for w, v in ratio.items()}
    return {**options, "intra_op_num_threads": best, "threads_measured": measured}


def thread_workloads(
    make_feed: Callable[[int], dict[str, np.ndarray]],
    real_feeds: dict[int, list[dict[str, np.ndarray]]] | None,
) -> dict[str, list[dict[str, np.ndarray]]]:
    """What ``choose_threads`` times: batch 1 (6 runs) and batch 32 (2 runs)
    padded, and — for text — 8 single held-out inputs and 6 of the
    length-sorted batches of 32 (spread over all lengths)."""
    out = {"b1": [make_feed(1)] * 6, "b32": [make_feed(32)] * 2}
    real = real_feeds or {}
    if real.get(1):
        out["b1-real"] = real[1][:8]
    if real.get(32):
        step = max(1, len(real[32]) // 6)
        out["b32-real"] = real[32][::step][:6]
    return out


def _session(path: Path, provider: str = "CPUExecutionProvider", options: dict[str, Any] | None = None) -> Any:
    import onnxruntime as ort

    settings = options or session_options(provider)
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, settings["graph_optimization_level"])
    so.intra_op_num_threads = int(settings["intra_op_num_threads"])
    so.inter_op_num_threads = int(settings["inter_op_num_threads"])
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings["allow_spinning"] else "0")
    return ort.InferenceSession(str(path), so, providers=[provider])


@dataclass
class Tokenized:
    """Token ids of some texts (special tokens included, truncated, unpadded)
    and the tokenizer's padding id."""

    ids: list[list[int]]
    pad_id: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def pad(self, positions: Any) -> dict[str, np.ndarray]:
        """The inputs at ``positions`` as one batch, padded to the longest."""
        rows = [self.ids[i] for i in positions]
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = r, 1
        return {"input_ids": ids, "attention_mask": mask}

    def order(self) -> np.ndarray:
        """Positions shortest first (stable): neighbours pad little."""
        return np.argsort([len(r) for r in self.ids], kind="stable")


def tokenize(model_dir: Path, texts: list[str], max_length: int) -> Tokenized:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return Tokenized([list(r) for r in ids], int(tokenizer.pad_token_id or 0))


def length_batches(tokenized: Tokenized, batch: int) -> list[dict[str, np.ndarray]]:
    """The inputs sorted by length and cut into batches, each padded to its longest."""
    order = tokenized.order()
    return [tokenized.pad(order[s : s + batch]) for s in range(0, len(order), batch)]


def _text_batches(model_dir: Path, texts: list[str], max_length: int, batch: int = 32) -> list[dict[str, np.ndarray]]:
    """Batches in the texts' own order (each padded to its longest)."""
    tokenized = tokenize(model_dir, texts, max_length)
    return [tokenized.pad(range(s, min(s + batch, len(tokenized)))) for s in range(0, len(tokenized), batch)]


def reference_outputs(family: str, model_dir: Path, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    """The original torch model's outputs on the same batches."""
    import torch

    module, _ = _torch_module(family, model_dir, for_export=False)
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
    if classifier:
        p.flips = int((reference.argmax(1) != candidate.argmax(1)).sum())
        p.allowed_flips = int(np.floor((1 - INT8_MIN_TOP1) * len(reference) + 1e-9))
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
    options: dict[str, Any] | None = None,
    real_feeds: dict[int, list[dict[str, np.ndarray]]] | None = None,
) -> list[Latency]:
    """p50/p95 per batch size after warm-up, on this machine: inputs padded to
    ``sequence_length`` (``make_feed``), and, per batch size in ``real_feeds``,
    real inputs at their own lengths, one batch after another."""
    return measure_latencies(
        {"model": (path, provider, options)},
        make_feed,
        batches=batches,
        runs=runs,
        warmup=warmup,
        sequence_length=sequence_length,
        real_feeds=real_feeds,
    )["model"]


def measure_latencies(
    models: dict[str, tuple[Path, str, dict[str, Any] | None]],
    make_feed: Callable[[int], dict[str, np.ndarray]],
    batches: tuple[int, ...] = (1, 32),
    runs: int = 30,
    warmup: int = 5,
    sequence_length: int | None = None,
    real_feeds: dict[int, list[dict[str, np.ndarray]]] | None = None,
    rounds: int = 3,
) -> dict[str, list[Latency]]:
    """``measure_latency`` for several models (name → path, provider, session
    options) on the same inputs, interleaved: each shape's runs are split in
    ``rounds`` that visit every model in turn, so that load from other
    processes falls on all of them alike and their figures can be compared
    (the catalogue serves the int8 variant with the lowest recorded batch-1
    p95; timed one after another, under changing load, that pick was luck)."""
    sessions = {name: _session(path, provider, options) for name, (path, provider, options) in models.items()}
    out: dict[str, list[Latency]] = {name: [] for name in models}

    def timed(feeds: list[dict[str, np.ndarray]], n: int) -> dict[str, list[float]]:
        for session in sessions.values():
            for i in range(warmup):
                session.run(None, feeds[i % len(feeds)])
        times: dict[str, list[float]] = {name: [] for name in sessions}
        position = dict.fromkeys(sessions, 0)
        for r in range(rounds):
            share = n // rounds + (1 if r < n % rounds else 0)
            for name, session in sessions.items():
                for _ in range(share):
                    feed = feeds[position[name] % len(feeds)]
                    position[name] += 1
                    t0 = time.perf_counter()
                    session.run(None, feed)
                    times[name].append((time.perf_counter() - t0) * 1000)
        return times

    def record(batch: int, times: dict[str, list[float]], seq: int | None, lengths: str) -> None:
        for name, t in times.items():
            out[name].append(
                Latency(
                    batch=batch,
                    sequence_length=seq,
                    p50_ms=float(np.percentile(t, 50)),
                    p95_ms=float(np.percentile(t, 95)),
                    runs=len(t),
                    lengths=lengths,
                )
            )

    for batch in batches:
        record(batch, timed([make_feed(batch)], runs if batch == 1 else max(10, runs // 3)), sequence_length, "fixed")
    for batch, feeds in (real_feeds or {}).items():
        if not feeds:
            continue
        tokens = np.concatenate([f["attention_mask"].sum(axis=1) for f in feeds])
        n = runs if batch == 1 else max(10, min(len(feeds), runs))
        record(batch, timed(feeds, n), int(np.median(tokens)), "real")
    return out


# Which variant of a version is served first (the catalogue's
# ``variant_resolve``; the benchmark's "served int8"): the lowest geometric
# mean of the p50 at these recorded shapes — batch 1 and batch 32 padded —
# measured interleaved in one compile (``measure_latencies``). A single
# batch-1 p95 (the earlier rule) is the noisiest figure recorded: on 2 shared
# cores it picked the variant slower on every shape (docs/BENCHMARKS.md).
RANK_SHAPES = ("1", "32")


def latency_key(lat: Latency) -> str:
    """The key a latency is recorded under in the catalogue: "1", "32" (padded), "1-real", "32-real"."""
    return str(lat.batch) if lat.lengths == "fixed" else f"{lat.batch}-{lat.lengths}"


def speed_score(latency: dict[str, Any] | None) -> float | None:
    """The ranking figure of a variant's recorded latency (key → {"p50_ms": …}):
    the geometric mean of the p50 at ``RANK_SHAPES``; None when one is missing."""
    values = []
    for key in RANK_SHAPES:
        entry = (latency or {}).get(key)
        p50 = entry.get("p50_ms") if isinstance(entry, dict) else None
        if not isinstance(p50, int | float) or isinstance(p50, bool) or not p50 > 0:
            return None
        values.append(float(p50))
    return float(np.exp(np.mean(np.log(values))))


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


# --- int8 plans ----------------------------------------------------------------


def build_int8(
    source: Path,
    out: Path,
    *,
    work: Path,
    calibration: list[dict[str, np.ndarray]],
    check: Callable[[Path], Parity],
    options: dict[str, Any] | None = None,
    plans: tuple[QuantPlan, ...] = INT8_PLANS,
    inherit: InheritedPlan | None = None,
) -> tuple[Parity, dict[str, Any]]:
    """Build ``out`` from the fp32 ``source`` with each plan in turn until one
    passes ``check`` (parity on the held-out inputs); returns that parity (or
    the last plan's) and what was done, for the manifest. Rewrites and the
    node ranking are computed on the calibration batches only, once each; a
    plan that needs calibration is skipped without it.

    ``inherit``: the base version's plan, tried before ``plans`` (then with one
    and three more sensitive nodes fp32): its rewrite constants and fp32
    nodes, so that the int8 encoder weights are the base's bytes; skipped
    when this graph lacks a node it kept fp32."""
    import onnx

    names = {n.name for n in weight_nodes(onnx.load(str(source), load_external_data=False))}
    if inherit is not None and set(inherit.fp32_nodes) <= names:
        plans = inherit.plans() + plans
    else:
        inherit = None
    prepared: dict[tuple[bool, float | None, int, str], tuple[Path, dict[str, Any]]] = {}
    rankings: dict[Path, list[tuple[str, float]]] = {}
    tried: list[dict[str, Any]] = []
    built: set[tuple[str, bool, tuple[str, ...]]] = set()
    parity: Parity | None = None
    record: dict[str, Any] = {}
    for plan in plans:
        calibrated = plan.smoothing is not None or plan.outlier_channels or plan.keep_fp32
        if calibrated and not calibration:
            continue
        if not calibrated and (str(source), plan.embeddings, ()) in built:
            continue  # the same graph as an inherited plan already built (the base's plain int8)
        src, rewrite = source, dict[str, Any]()
        key = (plan.inherited, plan.smoothing, plan.outlier_channels, plan.outlier_scope)
        if plan.smoothing is not None or plan.outlier_channels:
            if key not in prepared:
                target = work / f"{out.stem}-prepared-{len(prepared)}.onnx"
                done = prepare_int8(
                    source,
                    target,
                    calibration,
                    smoothing=plan.smoothing,
                    outlier_channels=plan.outlier_channels,
                    outlier_scope=plan.outlier_scope,
                    fixed=inherit.rewrite if plan.inherited and inherit is not None else None,
                )
                prepared[key] = (target, done)
            src, rewrite = prepared[key]
        kept: list[str] = list(inherit.fp32_nodes) if plan.inherited and inherit is not None else []
        if plan.keep_fp32:
            if src not in rankings:
                started = time.perf_counter()
                rankings[src] = node_sensitivity(src, work, calibration, options)
                record["sensitivity_seconds"] = round(time.perf_counter() - started, 1)
            kept += [name for name, _ in rankings[src] if name not in kept][: plan.keep_fp32]
        quantize_int8(src, out, exclude=kept + rewrite.get("fp32_nodes", []), embeddings=plan.embeddings)
        built.add((str(src), plan.embeddings, tuple(kept)))
        parity = check(out)
        tried.append(
            {
                "plan": plan.name,
                "top1_agreement": parity.top1_agreement,
                "flips": parity.flips,
                "max_abs_diff": parity.max_abs_diff,
                "passed": parity.passed,
            }
        )
        record.update(
            {
                "plan": plan.name,
                "smoothing": {"alpha": plan.smoothing, "activations": len(rewrite.get("smoothed", []))}
                if plan.smoothing is not None
                else None,
                "outlier_channels": {
                    "k": plan.outlier_channels,
                    "scope": plan.outlier_scope,
                    "activations": len(rewrite.get("decomposed", [])),
                    "fp32_matmuls": len(rewrite.get("fp32_nodes", [])),
                }
                if plan.outlier_channels
                else None,
                "embeddings": "int8" if plan.embeddings else "fp32",
                "fp32_nodes": kept,
                # The base version's plan and rewrite constants, reused (its
                # encoder weights are this version's): which, and how many
                # activations took the base's decision rather than this calibration's.
                "inherited_from": {**inherit.source, "activations": rewrite.get("inherited", 0)}
                if plan.inherited and inherit is not None
                else None,
                "sensitivity": [
                    {"node": name, "kl": float(f"{score:.3g}")} for name, score in rankings.get(src, [])[:8]
                ],
            }
        )
        if parity.passed:
            break
    for path, _ in prepared.values():
        path.unlink(missing_ok=True)
    if parity is None:
        raise RuntimeError("no int8 plan could be built")
    total = len(names)
    record["weight_nodes"] = {"int8": total - len(record["fp32_nodes"]), "fp32": len(record["fp32_nodes"])}
    record["tried"] = tried
    return parity, record


# --- the whole compile of one version ------------------------------------------------


def _calibration_batches(
    model_dir: Path, texts: list[str] | None, max_length: int
) -> tuple[list[dict[str, np.ndarray]], dict[str, Any]]:
    """Up to CALIBRATION_ROWS inputs (a fixed random sample of ``texts``, the
    training part), batched by length; generated sentences when there are none."""
    source = "training inputs"
    if not texts:
        from runners.synthetic_text import support_tickets

        texts, source = [t for t, _ in support_tickets(CALIBRATION_ROWS, seed=11)], "generated sentences"
    if len(texts) > CALIBRATION_ROWS:
        picked = np.random.default_rng(0).choice(len(texts), CALIBRATION_ROWS, replace=False)
        texts = [texts[i] for i in sorted(picked)]
    return length_batches(tokenize(model_dir, texts, max_length), 32), {"source": source, "rows": len(texts)}


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
    base: BaseVariants | None = None,
) -> list[CompiledVariant]:
    """Export, optimise, quantise, check parity, time and bundle every spec.

    Args:
        family: the version's family (``text-classifier``, ``sentence-encoder``, ``mlp-classifier``).
        model_dir: the version's files.
        work: a scratch directory.
        eval_inputs: held-out inputs (and labels) for parity, and the training
            inputs that calibrate int8.
        manifest_base: schema, labels, preprocessing and metrics to put in every manifest.
        specs: the variants to build.
        skip: names of variants that already exist (not rebuilt).
        corrupt: a test hook that may damage a variant file before its parity check.
        base: the version this one was fine-tuned from; when its encoder
            weights are this version's (``encoder_digest``: a head-only
            fine-tune), each int8 variant tries the base's plan first
            (``InheritedPlan``) so its int8 encoder is the base's bytes.
    """
    import onnxruntime as ort
    import torch

    work.mkdir(parents=True, exist_ok=True)
    skip = skip or set()
    fp32 = work / "model-fp32.onnx"
    io_spec = export_onnx(family, model_dir, fp32)
    classifier = io_spec["output"] == "probabilities"
    text = io_spec["inputs"] != ["features"]
    targets = eval_inputs.targets
    calibration: list[dict[str, np.ndarray]] = []
    calibration_info: dict[str, Any] = {}
    real_feeds: dict[int, list[dict[str, np.ndarray]]] = {}
    if text:
        texts = eval_inputs.texts or [f"sample input number {i} for parity" for i in range(64)]
        tokenized = tokenize(model_dir, texts, io_spec["max_length"])
        # Parity in batches of similar length (little padding): the targets follow the same order.
        order = tokenized.order()
        batches = [tokenized.pad(order[s : s + 32]) for s in range(0, len(order), 32)]
        targets = [targets[i] for i in order] if targets is not None else None
        calibration, calibration_info = _calibration_batches(
            model_dir, eval_inputs.calibration_texts, io_spec["max_length"]
        )
        # Real lengths: single inputs (a fixed random sample), and the length-sorted batches of 32.
        sample = np.random.default_rng(0).permutation(len(tokenized))[:64]
        real_feeds = {1: [tokenized.pad([i]) for i in sample], 32: batches}
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
    encoder = encoder_digest(model_dir) if text else None
    same_encoder = base is not None and encoder is not None and encoder_digest(base.model_dir) == encoder
    toolchain = f"torch {torch.__version__} / onnxruntime {ort.__version__} / opset {OPSET}"
    optimized = work / "model-fp32-optimized.onnx"
    layer_norms: dict[Path, int] = {}
    results: list[CompiledVariant] = []
    built: list[tuple[CompiledVariant, Path, str, dict[str, Path], dict[str, Any]]] = []
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
                if not optimized.exists():
                    optimize_bert(fp32, optimized, io_spec["num_heads"], io_spec["hidden_size"])
                source = optimized
            if spec.quantized and text:
                # int8 graphs get the fast layer norm (``fast_layer_norms``);
                # the fp32 variants stay the exported / fused graphs.
                fast = source.with_name(f"{source.stem}-fast-ln.onnx")
                if not fast.exists():
                    layer_norms[fast] = rewrite_layer_norms(source, fast)
                source = fast
            elif spec.optimized and not text:
                results.append(
                    CompiledVariant(
                        spec, "skipped", "graph fusions apply to transformer encoders only", toolchain=toolchain
                    )
                )
                continue
            provider = "CUDAExecutionProvider" if spec.hardware == "cuda" else "CPUExecutionProvider"
            options = session_options(provider)

            def check(candidate: Path, spec: VariantSpec = spec, provider: str = provider) -> Parity:
                if corrupt is not None:
                    corrupt(spec, candidate)
                outputs = onnx_outputs(candidate, batches, provider)
                return parity_check(reference, outputs, spec, targets, classifier)

            quantization: dict[str, Any] = {}
            if spec.quantized:
                inherit = None
                if same_encoder and base is not None and spec.name in base.bundles:
                    inherit = InheritedPlan.read(base.bundles[spec.name], base.label)
                parity, quantization = build_int8(
                    source,
                    path,
                    work=work,
                    calibration=calibration,
                    check=check,
                    options=options,
                    plans=INT8_PLANS if text else INT8_PLANS[:1],
                    inherit=inherit,
                )
                quantization = {
                    "method": "dynamic",
                    "weights": "int8 per channel",
                    "activations": "uint8 per tensor, range measured on each call",
                    "calibration": calibration_info,
                    "encoder_sha256": encoder,
                    # How many layer norms run as RMS norm of the centred input.
                    "layer_norms_rewritten": layer_norms.get(source, 0),
                    **quantization,
                }
            else:
                if spec.precision == "fp16":
                    convert_fp16(source, path)
                else:
                    path.write_bytes(source.read_bytes())
                parity = check(path)
            variant = CompiledVariant(
                spec,
                "served" if parity.passed else "rejected",
                parity.reason,
                model_size=path.stat().st_size,
                parity=parity,
                toolchain=toolchain + (f" / int8 plan {quantization['plan']}" if quantization else ""),
                fingerprint=dict(hardware_fingerprint(provider)),
                quantization=quantization,
            )
            if provider == "CPUExecutionProvider":
                options = choose_threads(path, thread_workloads(make_feed, real_feeds), options)
            variant.session_options = options
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
                "parity": {
                    **asdict(parity),
                    "set": "held-out inputs" if eval_inputs.texts or eval_inputs.features is not None else "generated",
                },
                "quantization": quantization,
                "session_options": options,
                "measured_on": variant.fingerprint,
            }
            built.append((variant, path, provider, files, manifest))
        except Exception as exc:  # one variant failing must not lose the others
            results.append(CompiledVariant(spec, "failed", f"{type(exc).__name__}: {exc}", toolchain=toolchain))
    # Every built variant timed on the same inputs, interleaved (comparable
    # figures), then bundled with them.
    try:
        latencies = measure_latencies(
            {v.spec.name: (path, provider, v.session_options or None) for v, path, provider, _, _ in built},
            make_feed,
            sequence_length=seq,
            real_feeds=real_feeds,
        )
    except Exception as exc:
        latencies = {}
        reason = f"latency: {type(exc).__name__}: {exc}"
        built, failed = [], built
        results += [CompiledVariant(v.spec, "failed", reason, toolchain=toolchain) for v, *_ in failed]
    for variant, _, _, files, manifest in built:
        try:
            variant.latency = latencies[variant.spec.name]
            manifest["latency"] = [asdict(lat) for lat in variant.latency]
            variant.bundle_path = write_bundle(work / f"{variant.spec.name}.tar", files, manifest)
            results.append(variant)
        except Exception as exc:
            results.append(CompiledVariant(variant.spec, "failed", f"{type(exc).__name__}: {exc}", toolchain=toolchain))
    rank = {spec.name: i for i, spec in enumerate(specs)}
    return sorted(results, key=lambda r: rank.get(r.spec.name, len(rank)))
