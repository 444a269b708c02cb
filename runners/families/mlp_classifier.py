"""``mlp-classifier``: a small torch MLP over standardised numeric features.

Weights are stored as ``model.safetensors`` beside a ``config.json`` (layer
sizes, labels, the feature means and scales) — never a pickle.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


@dataclass
class FitProgress:
    step: int
    epoch: int
    loss: float
    learning_rate: float


@dataclass
class FitResult:
    output_dir: Path
    files: list[str]
    parameter_count: int
    hyperparameters: dict[str, Any]
    loss_history: list[float]


DEFAULTS: dict[str, Any] = {"hidden": 64, "epochs": 60, "learning_rate": 0.01, "batch_size": 64, "seed": 0}


def _build(input_dim: int, hidden: int, n_classes: int) -> Any:
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(input_dim, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, n_classes),
    )


def fit(
    features: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    output_dir: Path,
    hyperparameters: dict[str, Any] | None = None,
    progress: Callable[[FitProgress], None] | None = None,
) -> FitResult:
    """Train the MLP on ``features`` (n, d) and class indices ``targets`` (n,).

    Args:
        features: numeric inputs, one row per example.
        targets: class index per row, in ``labels`` order.
        labels: class names.
        output_dir: where ``model.safetensors`` and ``config.json`` are written.
        hyperparameters: ``hidden``, ``epochs``, ``learning_rate``, ``batch_size``, ``seed``.
        progress: called after every optimiser step.
    """
    import torch
    from safetensors.torch import save_file

    hp = {**DEFAULTS, **(hyperparameters or {})}
    torch.manual_seed(int(hp["seed"]))
    x = np.asarray(features, dtype=np.float32)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    xt = torch.from_numpy((x - mean) / scale)
    yt = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    net = _build(x.shape[1], int(hp["hidden"]), len(labels))
    optimiser = torch.optim.Adam(net.parameters(), lr=float(hp["learning_rate"]))
    generator = torch.Generator().manual_seed(int(hp["seed"]))
    losses: list[float] = []
    step = 0
    for epoch in range(int(hp["epochs"])):
        order = torch.randperm(len(xt), generator=generator)
        epoch_loss = 0.0
        for start in range(0, len(xt), int(hp["batch_size"])):
            batch = order[start : start + int(hp["batch_size"])]
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xt[batch]), yt[batch])
            loss.backward()
            optimiser.step()
            step += 1
            value = loss.item()
            epoch_loss += value * len(batch)
            if progress:
                progress(FitProgress(step, epoch, value, float(hp["learning_rate"])))
        losses.append(epoch_loss / len(xt))
    output_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(output_dir / WEIGHTS), metadata={"family": "mlp-classifier"})
    config = {
        "family": "mlp-classifier",
        "input_dim": int(x.shape[1]),
        "hidden": int(hp["hidden"]),
        "labels": list(labels),
        "mean": mean.tolist(),
        "scale": scale.tolist(),
    }
    (output_dir / CONFIG).write_text(json.dumps(config, indent=1))
    return FitResult(
        output_dir=output_dir,
        files=[WEIGHTS, CONFIG],
        parameter_count=sum(int(p.numel()) for p in net.parameters()),
        hyperparameters=hp,
        loss_history=losses,
    )


def load(model_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The torch module (eval mode) and its config."""
    from safetensors.torch import load_file

    config = json.loads((model_dir / CONFIG).read_text())
    net = _build(config["input_dim"], config["hidden"], len(config["labels"]))
    net.load_state_dict(load_file(str(model_dir / WEIGHTS)))
    net.eval()
    return net, config


def predict(model_dir: Path, features: np.ndarray) -> np.ndarray:
    """Class probabilities, shape (n, len(labels))."""
    import torch

    net, config = load(model_dir)
    x = (np.asarray(features, dtype=np.float32) - np.asarray(config["mean"], dtype=np.float32)) / np.asarray(
        config["scale"], dtype=np.float32
    )
    with torch.inference_mode():
        logits = net(torch.from_numpy(x))
    return torch.softmax(logits, dim=1).numpy()
