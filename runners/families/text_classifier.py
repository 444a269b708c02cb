"""``text-classifier``: a transformer encoder (e.g. MiniLM) + mean pooling + a
linear classification head — transfer learning as done every day.

``fit()`` trains a new head on a pretrained encoder, optionally unfreezing its
last N layers. With N = 0 the frozen encoder is needed only once: its pooled
features are computed a single time and the head trains on them for every
epoch. The result directory holds ``model.safetensors`` + ``config.json`` (the
encoder, loadable by ``AutoModel``), ``head.safetensors``, ``classifier.json``
(labels, pooling, max length) and the tokenizer files — never a pickle.
It runs unchanged on a GPU worker: the device is picked at run time.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from runners.evaluation import ClassificationReport, classification_report
from runners.families.sentence_encoder import mean_pool, pooled_batches
from runners.splits import stratified_split

HEAD_FILE = "head.safetensors"
CLASSIFIER_CONFIG = "classifier.json"
WEIGHTS = "model.safetensors"


class Cancelled(Exception):
    """``should_stop()`` asked the run to stop."""


@dataclass
class FitParams:
    epochs: int = 20
    learning_rate: float = 3e-2  # the head's peak; both rates decay on a cosine
    encoder_learning_rate: float = 3e-5  # unfrozen encoder layers'
    batch_size: int = 32
    max_length: int = 128
    unfreeze_layers: int = 0  # 0: head only
    holdout: float = 0.2
    seed: int = 0
    confidence_threshold: float = 0.9

    BOUNDS = {
        "epochs": (1, 200),
        "learning_rate": (1e-6, 1.0),
        "encoder_learning_rate": (1e-7, 1e-2),
        "batch_size": (1, 1024),
        "max_length": (8, 512),
        "unfreeze_layers": (0, 48),
        "holdout": (0.05, 0.5),
        "seed": (0, 2**31 - 1),
        "confidence_threshold": (0.0, 1.0),
    }

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> FitParams:
        """Validated parameters; unknown names and out-of-range values raise ValueError."""
        values = dict(values or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s): {', '.join(unknown)}")
        out = cls()
        for name, raw in values.items():
            if raw is None or raw == "":
                continue
            kind = int if known[name].type in ("int", int) else float
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a number, not {raw!r}") from None
            if kind is int and float(raw) != value:
                raise ValueError(f"{name} must be a whole number, not {raw!r}")
            low, high = cls.BOUNDS[name]
            if not low <= value <= high:
                raise ValueError(f"{name} must be between {low} and {high}, not {value}")
            setattr(out, name, value)
        return out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Progress:
    phase: str  # "features" | "train" | "evaluate"
    step: int
    total_steps: int
    epoch: int = 0
    loss: float | None = None
    learning_rate: float | None = None


@dataclass
class FitResult:
    output_dir: Path
    files: list[str]
    parameter_count: int
    labels: list[str]
    report: ClassificationReport
    loss_history: list[tuple[int, float]]
    params: dict[str, Any]
    device: str
    train_rows: int
    holdout_rows: int
    seconds: dict[str, float] = field(default_factory=dict)


def pick_device(device: str | None = None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class _Batches:
    """Pre-tokenised texts, padded per batch (length-sorted for feature passes)."""

    def __init__(self, tokenizer: Any, texts: list[str], max_length: int) -> None:
        self.tokenizer = tokenizer
        self.encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]

    def collate(self, indices: list[int] | np.ndarray, device: str) -> dict[str, Any]:
        batch = self.tokenizer.pad({"input_ids": [self.encoded[i] for i in indices]}, return_tensors="pt")
        return {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}


def encoder_layers(encoder: Any) -> list[Any]:
    """The transformer blocks of an ``AutoModel`` encoder, first to last
    (BERT/RoBERTa/MPNet/Electra: ``encoder.layer``; DistilBERT: ``transformer.layer``)."""
    for path in ("encoder.layer", "transformer.layer", "layers"):
        node = encoder
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if node is not None:
            return list(node)
    return []


def fit(
    base_dir: Path,
    texts: list[str],
    labels: list[str],
    output_dir: Path,
    params: FitParams | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | None = None,
    cache_features: bool = True,
) -> FitResult:
    """Fine-tune a classifier on ``texts``/``labels`` from the encoder in ``base_dir``.

    Args:
        base_dir: a Hugging Face encoder directory (a sentence encoder or a
            previous text-classifier output).
        texts: one input per example.
        labels: the class name of each example.
        output_dir: where the new model's files are written.
        params: hyperparameters (``FitParams``); defaults when None.
        progress: called with a ``Progress`` after every batch of every phase.
        should_stop: polled at every batch; returning True raises ``Cancelled``.
        device: "cpu", "cuda", …; picked automatically when None.
        cache_features: with ``unfreeze_layers == 0``, encode every text once
            (True) or run the frozen encoder again every epoch (False, the
            naive loop; kept for the benchmark).

    Returns:
        A ``FitResult`` with the evaluation on the held-out split.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    p = params or FitParams()
    dev = pick_device(device)
    torch.manual_seed(p.seed)
    names = sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    y = np.array([index[label] for label in labels], dtype=np.int64)
    train_idx, held_idx = stratified_split(y, p.holdout, p.seed)

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    encoder = AutoModel.from_pretrained(str(base_dir), local_files_only=True).to(dev)
    hidden = int(encoder.config.hidden_size)
    head = torch.nn.Linear(hidden, len(names)).to(dev)
    batches = _Batches(tokenizer, texts, p.max_length)
    y_t = torch.from_numpy(y).to(dev)
    generator = torch.Generator().manual_seed(p.seed)
    steps_per_epoch = math.ceil(len(train_idx) / p.batch_size)
    total_train = steps_per_epoch * p.epochs
    losses: list[tuple[int, float]] = []
    seconds: dict[str, float] = {}

    def check() -> None:
        if should_stop is not None and should_stop():
            raise Cancelled()

    def report(phase: str, step: int, total: int, **kw: Any) -> None:
        if progress is not None:
            progress(Progress(phase=phase, step=step, total_steps=total, **kw))

    def encode(indices: np.ndarray, phase: str, grad: bool = False) -> Any:
        """Pooled features of ``indices``, in that order, in length-sorted batches."""
        order = sorted(range(len(indices)), key=lambda i: len(batches.encoded[indices[i]]))
        out = torch.empty((len(indices), hidden), device=dev)
        n_batches = math.ceil(len(order) / 64)
        with torch.no_grad():
            for b in range(n_batches):
                check()
                chunk = order[b * 64 : (b + 1) * 64]
                inputs = batches.collate([int(indices[i]) for i in chunk], dev)
                out[chunk] = mean_pool(encoder(**inputs).last_hidden_state, inputs["attention_mask"])
                report(phase, b + 1, n_batches)
        return out

    for param in encoder.parameters():
        param.requires_grad = False
    layers = encoder_layers(encoder)
    unfrozen = list(layers)[-p.unfreeze_layers :] if p.unfreeze_layers else []
    for layer in unfrozen:
        for param in layer.parameters():
            param.requires_grad = True
    groups: list[dict[str, Any]] = [{"params": head.parameters(), "lr": p.learning_rate}]
    if unfrozen:
        groups.append({"params": [q for layer in unfrozen for q in layer.parameters()], "lr": p.encoder_learning_rate})
    optimiser = torch.optim.AdamW(groups, weight_decay=0.0)
    # Cosine decay to zero over the run: the head then settles on the optimum
    # instead of hovering around it (measured: it matches logistic regression
    # on the frozen features whatever the seed).
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(total_train, 1))

    started = time.perf_counter()
    cached = None
    encoder.eval()
    if not unfrozen and cache_features:
        cached = encode(np.concatenate([train_idx, held_idx]), "features")
        seconds["features"] = time.perf_counter() - started

    train_started = time.perf_counter()
    step = 0
    for epoch in range(p.epochs):
        order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
        if unfrozen:
            encoder.train()
        for b in range(steps_per_epoch):
            check()
            batch = order[b * p.batch_size : (b + 1) * p.batch_size]
            if cached is not None:
                # Positions of these examples in the cached (train + holdout) matrix.
                features = cached[torch.from_numpy(np.searchsorted(train_idx, batch)).to(dev)]
            elif unfrozen:
                inputs = batches.collate(batch, dev)
                features = mean_pool(encoder(**inputs).last_hidden_state, inputs["attention_mask"])
            else:
                with torch.inference_mode():
                    inputs = batches.collate(batch, dev)
                    features = mean_pool(encoder(**inputs).last_hidden_state, inputs["attention_mask"])
                features = features.clone()
            loss = torch.nn.functional.cross_entropy(head(features), y_t[torch.from_numpy(batch).to(dev)])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            value = float(loss.item())
            losses.append((step, value))
            report("train", step, total_train, epoch=epoch, loss=value, learning_rate=schedule.get_last_lr()[0])
    seconds["train"] = time.perf_counter() - train_started

    eval_started = time.perf_counter()
    encoder.eval()
    with torch.inference_mode():
        held_features = cached[len(train_idx) :] if cached is not None else encode(held_idx, "evaluate")
        probs = torch.softmax(head(held_features), dim=1).cpu().numpy()
    evaluation = classification_report(y[held_idx], probs, names, threshold=p.confidence_threshold)
    seconds["evaluate"] = time.perf_counter() - eval_started

    output_dir.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(str(output_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(output_dir))
    save_file(
        {"weight": head.weight.detach().cpu().contiguous(), "bias": head.bias.detach().cpu().contiguous()},
        str(output_dir / HEAD_FILE),
        metadata={"family": "text-classifier"},
    )
    (output_dir / CLASSIFIER_CONFIG).write_text(
        json.dumps(
            {
                "family": "text-classifier",
                "labels": names,
                "pooling": "mean",
                "max_length": p.max_length,
                "confidence_threshold": p.confidence_threshold,
            },
            indent=1,
        )
    )
    files = sorted(f.name for f in output_dir.iterdir() if f.is_file())
    seconds["total"] = time.perf_counter() - started
    return FitResult(
        output_dir=output_dir,
        files=files,
        parameter_count=sum(int(q.numel()) for q in encoder.parameters())
        + sum(int(q.numel()) for q in head.parameters()),
        labels=names,
        report=evaluation,
        loss_history=losses,
        params=p.as_dict(),
        device=dev,
        train_rows=len(train_idx),
        holdout_rows=len(held_idx),
        seconds=seconds,
    )


def load_encoder(base_dir: Path, device: str | None = None) -> tuple[Any, Any]:
    """Tokenizer and encoder (eval mode) of a local encoder directory."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    encoder = AutoModel.from_pretrained(str(base_dir), local_files_only=True).to(pick_device(device)).eval()
    return tokenizer, encoder


def mean_pooled_features(tokenizer: Any, encoder: Any, texts: list[str], max_length: int = 128) -> np.ndarray:
    """Frozen mean-pooled embeddings (not normalised), shape (len(texts), hidden)."""
    return np.concatenate([p.cpu().numpy() for p in pooled_batches(tokenizer, encoder, texts, 64, max_length)])


def load(model_dir: Path, device: str | None = None) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Tokenizer, encoder, head and classifier config of a saved text-classifier."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    dev = pick_device(device)
    config = json.loads((model_dir / CLASSIFIER_CONFIG).read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    encoder = AutoModel.from_pretrained(str(model_dir), local_files_only=True).to(dev).eval()
    state = load_file(str(model_dir / HEAD_FILE))
    head = torch.nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
    head.load_state_dict(state)
    return tokenizer, encoder, head.to(dev).eval(), config


def predict(model_dir: Path, texts: list[str], batch_size: int = 64, device: str | None = None) -> np.ndarray:
    """Class probabilities, shape (len(texts), len(labels)), in ``classifier.json`` label order."""
    import torch

    tokenizer, encoder, head, config = load(model_dir, device)
    with torch.inference_mode():
        out = [
            torch.softmax(head(pooled), dim=1).cpu().numpy()
            for pooled in pooled_batches(tokenizer, encoder, texts, batch_size, config["max_length"])
        ]
    return np.concatenate(out) if out else np.zeros((0, len(config["labels"])), dtype=np.float32)
