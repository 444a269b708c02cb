"""``text-classifier``: a transformer encoder (e.g. MiniLM) + mean pooling + a
linear classification head — transfer learning as done every day.

``fit()`` runs in phases — features → baseline → head → unfreeze → evaluate →
save — and picks how to train from ``FitParams.recipe``:

* ``"default"``: chosen from the data (rows, labels, text length) and a time
  budget. The frozen encoder's pooled features are computed once; a logistic
  regression on them warms the head up; then the top layers (all of them when
  at least the minimum of epochs fits the budget) are unfrozen with
  discriminative learning rates (head 2e-3, top layer 2e-4, each layer below
  0.9 times the one above; label smoothing 0.1), with early stopping on an
  *inner* validation split carved from the training part (never the held-out
  evaluation split), never before a minimum of epochs; the epoch chosen is,
  of those from the minimum on, the latest within the validation noise (one
  standard error) of their best.
  "Epoch 0", the warmed-up head on the frozen encoder, is kept instead when it
  is better on the inner validation rows by a sign test (p < 0.05). Else,
  when the time budget allows (planned from the start, checked once an
  epoch is timed), the same recipe is trained again from the start on the
  *whole* training part, inner validation rows included — the refit — for as
  many epochs as its own schedule needs to do the learning the selection run
  had done by the chosen epoch (``refit_epochs``), and its weights are served
  interpolated with the ones it started from — 0.6 x the refit's + 0.4 x the
  base encoder's and the baseline's head (WiSE-FT, ``interpolate``); otherwise
  the best epoch's weights are kept. CPU threads are picked by timing before
  every epoch (one beats two on a busy machine).
* ``"auto"``: the same, as a small search over 2–3 unfreezing recipes within
  the budget, picked by inner-validation macro F1; every trial is recorded.
* ``"manual"``: the explicit hyperparameters, as before (head only with
  ``unfreeze_layers == 0``, its features computed once).

Every run also fits the obvious baseline — logistic regression on the frozen
encoder's mean-pooled embeddings (C picked on the inner validation split, then
refit on the whole training part) — and evaluates it on the same held-out
split, so the job can say whether fine-tuning was worth it.

The result directory holds ``model.safetensors`` + ``config.json`` (the
encoder, loadable by ``AutoModel``), ``head.safetensors``, ``classifier.json``
(labels, pooling, max length) and the tokenizer files — never a pickle.
It runs unchanged on a GPU worker: the device is picked at run time.
"""

from __future__ import annotations

import copy
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
from runners.splits import inner_split, stratified_split

HEAD_FILE = "head.safetensors"
CLASSIFIER_CONFIG = "classifier.json"
WEIGHTS = "model.safetensors"

RECIPES = ("default", "auto", "manual")
# The hyperparameters a recipe chooses; set them yourself with recipe "manual".
RECIPE_KNOBS = ("epochs", "learning_rate", "encoder_learning_rate", "batch_size", "unfreeze_layers")
# Share of the training part kept for early stopping and picking. 30%, not 15%: the model served is
# refit on the whole training part anyway, and twice the validation rows halve the variance of the
# choices (one standard error 2.2 instead of 3.1 points on the benchmark), while the selection run costs
# less and leaves more of the budget to the refit (docs/BENCHMARKS.md: +3.97 / +1.18 / +4.10 points
# vs +3.18 / +0.00 / +2.73 on seeds 0/1/2).
INNER_VALIDATION = 0.3
BASELINE_CS = (0.1, 1.0, 10.0)
CURVE_POINTS = 200  # loss points kept per trial
# A training epoch with every layer unfrozen costs (1 + TRAIN_COST) frozen
# forward passes per row (see ``plan_recipes``).
TRAIN_COST = 4.0
RESERVE_S = 5.0  # kept out of the time budget for saving the model
REFIT_MARGIN = 1.15  # a refit is planned and started only with this margin over its timed estimate
# The default recipe's rates (bench/finetune.py --default-vs-baseline, docs/BENCHMARKS.md):
# MiniLM at 2e-4 on the top layer decaying 0.9 a layer down, label smoothing
# 0.1, did better on every training part than 1e-4 (no smoothing), 3e-4 or a flat 5e-5.
DEFAULT_RECIPE: dict[str, float] = {
    "encoder_learning_rate": 2e-4,
    "layer_decay": 0.9,
    "label_smoothing": 0.1,
    "interpolation": 0.6,
}
BASELINE_EVIDENCE = 0.05  # sign-test p-value below which epoch 0 replaces the fine-tune (``baseline_check``)
GROUP_BATCHES = 8  # batches sorted by length together (less padding, still shuffled)


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
    # "manual" for code that sets the knobs itself; the form and API default to
    # "default" (see ``from_dict``).
    recipe: str = "manual"
    time_budget_s: float = 300.0  # training time a "default"/"auto" recipe plans for

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
        "time_budget_s": (10.0, 86400.0),
    }

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> FitParams:
        """Validated parameters; unknown names and out-of-range values raise ValueError.

        Without a ``recipe``, the run uses ``"default"`` unless one of the
        knobs a recipe chooses (``RECIPE_KNOBS``) is given — then ``"manual"``,
        so explicit hyperparameters keep meaning what they always did. With
        recipe ``"default"``/``"auto"``, giving a knob is an error."""
        values = {k: v for k, v in dict(values or {}).items() if v is not None and v != ""}
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s): {', '.join(unknown)}")
        knobs = sorted(set(values) & set(RECIPE_KNOBS))
        recipe = values.pop("recipe", None)
        if recipe is None:
            recipe = "manual" if knobs else "default"
        if recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, not {recipe!r}")
        if recipe != "manual" and knobs:
            raise ValueError(
                f"{', '.join(knobs)} {'is' if len(knobs) == 1 else 'are'} chosen by the {recipe!r} recipe; "
                "use recipe 'manual' to set them yourself"
            )
        out = cls(recipe=recipe)
        for name, raw in values.items():
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
        """Every parameter; with a "default"/"auto" recipe, without the knobs it chooses."""
        values = asdict(self)
        if self.recipe != "manual":
            for name in RECIPE_KNOBS:
                values.pop(name)
        return values


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
    # Logistic regression on the frozen encoder's pooled embeddings, same split.
    baseline: dict[str, Any] = field(default_factory=dict)
    # One entry per recipe tried ("default": one; "auto": 2–3; "manual": none).
    trials: list[dict[str, Any]] = field(default_factory=list)
    recipe: str = "manual"
    inner_validation_rows: int = 0
    threads: int = 0  # torch CPU threads picked at the start (0: a GPU); picked again every epoch (trials)

    def comparison(self) -> dict[str, Any]:
        """The new model vs the frozen-embedding baseline on the held-out split (points = percentage points)."""
        if not self.baseline:
            return {}
        delta = 100 * (self.report.macro_precision - self.baseline["macro_precision"])
        return {
            "macro_precision_points": round(delta, 2),
            "macro_f1_points": round(100 * (self.report.macro_f1 - self.baseline["macro_f1"]), 2),
            "beats_baseline": delta > 0,
        }


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


def pick_threads(encoder: Any, inputs: dict[str, Any], warm_up: bool = True) -> int:
    """The torch thread count that runs ``encoder`` on ``inputs`` fastest *now*,
    of all the cores, half of them and one; sets it and returns it (CPU only).

    Timed, not assumed: on a machine whose cores other processes keep busy,
    threads that spin at every operator's barrier while a sibling waits for a
    core make two threads several times slower than one (measured on the
    shared 2-core machine at load average ~10: a forward pass 61 vs 11 ms per
    row, a training step 8x slower); on an idle machine all the cores win."""
    import torch

    most = torch.get_num_threads()
    candidates = sorted({most, max(1, most // 2), 1}, reverse=True)
    if len(candidates) == 1:
        return most
    was_training = encoder.training
    encoder.eval()
    timings: dict[int, float] = {}
    with torch.no_grad():
        if warm_up:
            encoder(**inputs)  # allocations, first-call dispatch
        for _ in range(2):  # interleaved, the best of two: the load moves while we measure
            for threads in candidates:
                torch.set_num_threads(threads)
                started = time.perf_counter()
                encoder(**inputs)
                timings[threads] = min(timings.get(threads, math.inf), time.perf_counter() - started)
    encoder.train(was_training)
    best = min(candidates, key=lambda t: (timings[t], -t))
    torch.set_num_threads(best)
    return best


@dataclass
class Recipe:
    """How one trial trains: unfreeze the top ``unfreeze_layers`` layers for at
    most ``epochs`` epochs with discriminative rates — the head at
    ``learning_rate``, the top unfrozen layer at ``encoder_learning_rate`` and
    each layer below it at ``layer_decay`` times the rate of the one above —
    and stop after ``patience`` epochs without a better inner-validation macro
    F1, but never before ``min_epochs`` (a fine-tune often dips below the
    warmed-up head in its first epochs, then overtakes it)."""

    name: str
    unfreeze_layers: int
    epochs: int
    encoder_learning_rate: float = 5e-5
    learning_rate: float = 2e-3
    batch_size: int = 16
    layer_decay: float = 1.0
    min_epochs: int = 4
    patience: int = 2
    warmup_share: float = 0.1
    label_smoothing: float = 0.0
    # Once the epoch count is chosen on the inner validation split, train again
    # from the start on the whole training part (inner validation included)
    # for that many epochs, when the time budget allows it.
    refit: bool = False
    # The refit's weights served: ``interpolation`` x its weights + (1 - ``interpolation``) x the
    # weights it started from (the base encoder, the baseline's head) — WiSE-FT (``interpolate``).
    interpolation: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def layer_rates(self, unfrozen: int) -> list[float]:
        """The peak rate of each unfrozen layer, lowest first."""
        return [self.encoder_learning_rate * self.layer_decay ** (unfrozen - 1 - i) for i in range(unfrozen)]


class _Run:
    """What every phase of one ``fit()`` shares: data, split, encoder, callbacks."""

    def __init__(
        self,
        base_dir: Path,
        texts: list[str],
        labels: list[str],
        p: FitParams,
        progress: Callable[[Progress], None] | None,
        should_stop: Callable[[], bool] | None,
        device: str | None,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.p = p
        self.dev = pick_device(device)
        torch.manual_seed(p.seed)
        self.names = sorted(set(labels))
        index = {n: i for i, n in enumerate(self.names)}
        self.y = np.array([index[label] for label in labels], dtype=np.int64)
        self.train_idx, self.held_idx = stratified_split(self.y, p.holdout, p.seed)
        self.tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
        self.encoder = AutoModel.from_pretrained(str(base_dir), local_files_only=True).to(self.dev)
        self.hidden = int(self.encoder.config.hidden_size)
        self.head = torch.nn.Linear(self.hidden, len(self.names)).to(self.dev)
        self.batches = _Batches(self.tokenizer, texts, p.max_length)
        self.y_t = torch.from_numpy(self.y).to(self.dev)
        self.progress = progress
        self.should_stop = should_stop
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()
        self.baseline: dict[str, Any] = {}
        self.trials: list[dict[str, Any]] = []
        self.held_cached: Any = None  # held-out features when the encoder stayed frozen
        self.thread_probe: dict[str, Any] | None = None  # inputs ``pick_threads`` times (CPU recipes only)
        self.threads = 0
        self.refit_threads: list[int] = []  # the refit's threads per epoch

    def retime_threads(self) -> int:
        """Pick the CPU thread count again (``pick_threads``), as the load moves: a count picked
        at the start on a quiet machine can make every later epoch several times slower once
        other jobs start (docs/BENCHMARKS.md: 2 threads picked at load 3, epochs at load 10).
        Returns it (0: not on a CPU recipe)."""
        if self.thread_probe is not None:
            self.threads = pick_threads(self.encoder, self.thread_probe, warm_up=not self.threads)
        return self.threads

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled()

    def report(self, phase: str, step: int, total: int, **kw: Any) -> None:
        if self.progress is not None:
            self.progress(Progress(phase=phase, step=step, total_steps=total, **kw))

    def encode(self, indices: np.ndarray, phase: str | None) -> Any:
        """Pooled features of ``indices`` (encoder in eval mode), in that order, in length-sorted batches;
        progress is reported under ``phase`` (None: not reported)."""
        import torch

        was_training = self.encoder.training
        self.encoder.eval()
        encoded = self.batches.encoded
        order = sorted(range(len(indices)), key=lambda i: len(encoded[indices[i]]))
        out = torch.empty((len(indices), self.hidden), device=self.dev)
        n_batches = math.ceil(len(order) / 64)
        with torch.no_grad():
            for b in range(n_batches):
                self.check()
                chunk = order[b * 64 : (b + 1) * 64]
                inputs = self.batches.collate([int(indices[i]) for i in chunk], self.dev)
                out[chunk] = mean_pool(self.encoder(**inputs).last_hidden_state, inputs["attention_mask"])
                if phase is not None:
                    self.report(phase, b + 1, n_batches)
        self.encoder.train(was_training)
        return out

    def freeze(self, unfreeze_layers: int) -> list[Any]:
        """Freeze the encoder but its top ``unfreeze_layers`` layers; returns those layers."""
        for param in self.encoder.parameters():
            param.requires_grad = False
        layers = encoder_layers(self.encoder)
        unfrozen = list(layers)[-unfreeze_layers:] if unfreeze_layers else []
        for layer in unfrozen:
            for param in layer.parameters():
                param.requires_grad = True
        return unfrozen


# ---------------------------------------------------------------- baseline


def logistic_regression(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    cs: tuple[float, ...] = BASELINE_CS,
    seed: int = 0,
) -> tuple[Any, float, dict[float, float]]:
    """A multinomial logistic regression; with a validation set, C is the one
    of ``cs`` with the best validation macro F1 (ties: the smaller C).
    Returns the model (fit on ``x_fit``), C and the validation F1 of each C."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    def make(c: float) -> Any:
        return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x_fit, y_fit)

    if len(cs) == 1 or x_val is None or y_val is None or len(y_val) == 0:
        c = cs[0] if len(cs) == 1 else 1.0
        return make(c), c, {}
    scores: dict[float, float] = {}
    models: dict[float, Any] = {}
    for c in cs:
        models[c] = make(c)
        scores[c] = float(f1_score(y_val, models[c].predict(x_val), average="macro", zero_division=0))
    best = max(cs, key=lambda c: (scores[c], -c))
    return models[best], best, scores


def frozen_baseline(
    features: np.ndarray,
    y: np.ndarray,
    fit_pos: np.ndarray,
    val_pos: np.ndarray,
    held_pos: np.ndarray,
    names: list[str],
    threshold: float,
    seed: int,
) -> tuple[dict[str, Any], Any, Any]:
    """The frozen-embedding baseline: C picked on the inner validation split,
    refit on the whole training part (fit + validation), scored on the held-out
    split. Returns its record, the model fit on the fit part only (C as
    picked) — the head's warm start — and the baseline model itself (the head
    kept when no fine-tuned epoch beats the frozen encoder on validation)."""
    warm, c, scores = logistic_regression(features[fit_pos], y[fit_pos], features[val_pos], y[val_pos], seed=seed)
    train_pos = np.concatenate([fit_pos, val_pos])
    model, _, _ = logistic_regression(features[train_pos], y[train_pos], cs=(c,), seed=seed)
    probs = np.zeros((len(held_pos), len(names)))
    probs[:, model.classes_] = model.predict_proba(features[held_pos])
    report = classification_report(y[held_pos], probs, names, threshold=threshold)
    record = {
        "method": "logistic regression on the frozen encoder's mean-pooled embeddings",
        "C": c,
        "validation_macro_f1_by_C": {str(k): round(v, 4) for k, v in scores.items()},
        **report.headline(),
    }
    return record, warm, model


def _head_from_logistic(head: Any, model: Any) -> None:
    """Copy a scikit-learn logistic regression into the linear head (classes it never saw get -inf-ish bias)."""
    import torch

    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        coef, intercept = model.coef_, model.intercept_
        if coef.shape[0] == 1:  # binary: one row for class 1
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        rows = torch.as_tensor(model.classes_, dtype=torch.long)
        head.weight[rows] = torch.as_tensor(coef, dtype=head.weight.dtype, device=head.weight.device)
        head.bias[rows] = torch.as_tensor(intercept, dtype=head.bias.dtype, device=head.bias.device)


# ---------------------------------------------------------------- recipes


def epoch_range(rows: int) -> tuple[int, int]:
    """(most, fewest) training epochs for ``rows`` fit rows: small data needs
    several passes (and its validation F1 is noisy, so early stopping waits
    for ``fewest``); large data learns most in one or two."""
    if rows <= 5_000:
        return 8, 4
    if rows <= 50_000:
        return 4, 2
    return 2, 1


def plan_recipes(
    mode: str,
    rows: int,
    labels: int,
    mean_tokens: float,
    layers: int,
    seconds_per_row: float,
    budget_s: float,
    refit_rows: int = 0,
) -> list[Recipe]:
    """The recipe(s) to try, chosen from the data and the time budget.

    ``seconds_per_row`` is the measured frozen forward pass per example (it
    carries the text length and this machine's speed and load); a training
    epoch with k of N layers unfrozen costs about ``rows * s * (1 + 4k/N)``
    plus a forward pass over the inner validation split. Every layer is
    unfrozen when at least ``fewest`` epochs of that fit the budget (the most
    learning), else the top half, the top 2, the top one; a budget that fits
    no epoch at all trains the head only (epoch 0, the baseline's head). The
    number of labels sets the patience: with few validation rows per label
    the validation F1 is noisy, so early stopping waits an epoch longer.

    ``refit_rows`` (the whole training part; 0: never) plans the refit: once
    the inner validation split has chosen the epoch count, the same training
    again on all ``refit_rows`` for that many epochs. Each planned epoch then
    costs both passes; when fewer than ``fewest`` of those fit, the depth is
    kept and the refit dropped (more layers did more than more rows in the
    runs of docs/BENCHMARKS.md) before fewer layers are tried.
    ``auto`` shares the budget among 2–3 recipes (rates, depth) and refits the
    chosen one only when time is left."""
    del mean_tokens  # enters through seconds_per_row
    if layers == 0:
        return []
    batch = 16 if rows < 2000 else 32
    most, fewest = epoch_range(rows)
    val_rows = max(1, round(rows * INNER_VALIDATION / (1 - INNER_VALIDATION)))
    patience = 2 if val_rows / max(labels, 1) >= 15 else 3

    def train_s(k: int, n: int) -> float:
        # Measured (MiniLM, 2 shared CPU cores, threads picked by timing): a
        # training step with every layer unfrozen costs ~4x the length-sorted
        # frozen forward pass per row (length-grouped batches of 16, backward,
        # AdamW); the plan is corrected once the first epoch is timed.
        return n * seconds_per_row * (1 + TRAIN_COST * k / layers)

    def refit_s(k: int) -> float:
        return REFIT_MARGIN * train_s(k, refit_rows)

    def epoch_s(k: int) -> float:
        return train_s(k, rows) + val_rows * seconds_per_row

    def fits(k: int, share: float = 1.0, refit: bool = False) -> int:
        return int(budget_s * share // max(epoch_s(k) + (refit_s(k) if refit else 0.0), 1e-9))

    def recipe(name: str, k: int, epochs: int, refit: bool = False, **rates: float) -> Recipe:
        return Recipe(
            name,
            k,
            epochs,
            batch_size=batch,
            min_epochs=min(fewest, epochs),
            patience=patience,
            refit=refit,
            **(DEFAULT_RECIPE | rates),
        )

    half = max(1, layers // 2)
    if mode == "auto":
        candidates = [
            recipe("all layers, layer decay", layers, most, refit=refit_rows > 0),
            recipe(
                "all layers, flat rate", layers, most, refit=refit_rows > 0, encoder_learning_rate=5e-5, layer_decay=1.0
            ),
            recipe(f"top {half} layers", half, most, refit=refit_rows > 0, encoder_learning_rate=1e-4, layer_decay=1.0),
        ]
        out = []
        for r in candidates:
            r.epochs = min(r.epochs, fits(r.unfreeze_layers, 1 / len(candidates)))
            r.min_epochs = min(r.min_epochs, r.epochs)
            if r.epochs >= max(2, fewest // 2):
                out.append(r)
        if len(out) >= 2:
            return out
        return plan_recipes("default", rows, labels, 0.0, layers, seconds_per_row, budget_s, refit_rows)
    for k in sorted({layers, half, min(2, layers), 1}, reverse=True):
        name = "all layers" if k == layers else f"top {k} layers"
        if refit_rows and fits(k, refit=True) >= fewest:
            return [recipe(name, k, min(most, fits(k, refit=True)), refit=True)]
        if fits(k) >= fewest:
            return [recipe(name, k, min(most, fits(k)))]
    n = min(most, fits(1))
    return [recipe("top layer", 1, n)] if n >= 1 else []


def length_grouped(order: np.ndarray, lengths: np.ndarray, batch_size: int, generator: Any) -> list[np.ndarray]:
    """Batches of ``order`` (already shuffled) with little padding: every run of
    ``GROUP_BATCHES`` batches is sorted by length and cut, then the batches are
    shuffled — still random, but each batch pads to similar lengths."""
    import torch

    span = batch_size * GROUP_BATCHES
    batches: list[np.ndarray] = []
    for g in range(0, len(order), span):
        chunk = order[g : g + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _downsample(points: list[tuple[int, float]], limit: int = CURVE_POINTS) -> list[list[float]]:
    if len(points) <= limit:
        return [[s, round(v, 5)] for s, v in points]
    stride = len(points) / limit
    kept = [points[int(i * stride)] for i in range(limit)] + [points[-1]]
    return [[s, round(v, 5)] for s, v in kept]


def _validate(run: _Run, features: Any, positions: np.ndarray) -> tuple[float, np.ndarray]:
    """Macro F1 of the head on ``features`` (the rows at ``positions``), and which rows it gets right."""
    import torch

    with torch.no_grad():
        probs = torch.softmax(run.head(features), dim=1).cpu().numpy()
    y = run.y[positions]
    return classification_report(y, probs, run.names).macro_f1, probs.argmax(axis=1) == y


def validation_noise(f1: float, rows: int) -> float:
    """One standard error of a score ``f1`` measured on ``rows`` validation rows
    (as if it were an accuracy): differences smaller than this are noise. On
    144 rows at 0.83 it is 3.1 points — more than the 2 points a fine-tune
    is expected to gain (docs/BENCHMARKS.md)."""
    return math.sqrt(max(f1 * (1 - f1), 0.0) / max(rows, 1))


def baseline_check(f1_0: float, right_0: np.ndarray, f1: float, right: np.ndarray) -> dict[str, Any]:
    """Epoch 0 (the warmed-up head on the frozen encoder) vs the chosen
    fine-tuned epoch on the same inner validation rows. The rows only one of
    them gets right decide: the baseline's head is kept when it scores higher
    *and* a one-sided sign test on those rows says it is better (p < 0.05) —
    evidence, not a coin toss. (Keeping it whenever it scored higher at all
    vetoed the fine-tune on seeds whose refit model gained 2-4 points on the
    held-out split: 144 validation rows cannot resolve 2 points, and epoch
    0's C was picked on those very rows — docs/BENCHMARKS.md.)"""
    from scipy.stats import binomtest

    only_baseline = int(np.sum(right_0 & ~right))
    only_tuned = int(np.sum(right & ~right_0))
    n = only_baseline + only_tuned
    p_value = float(binomtest(only_baseline, n, 0.5, alternative="greater").pvalue) if n else 1.0
    return {
        "epoch_0_macro_f1": round(f1_0, 4),
        "fine_tune_macro_f1": round(f1, 4),
        "rows_only_baseline_right": only_baseline,
        "rows_only_fine_tune_right": only_tuned,
        "sign_test_p_value": round(p_value, 4),
        "baseline_kept": round(f1_0, 4) > round(f1, 4) and p_value < BASELINE_EVIDENCE,
    }


def rate_factor(step: int, planned_steps: int, warmup: int) -> float:
    """The share of the peak learning rate at ``step`` (from 0): linear warm-up
    over ``warmup`` steps, then linear decay to zero at ``planned_steps``."""
    planned = max(planned_steps, warmup + 1)
    return min((step + 1) / warmup, max(0.0, (planned - step) / (planned - warmup)))


def schedule_epochs(epochs: int, steps_per_epoch: int, warmup_share: float) -> float:
    """The learning of a whole ``epochs``-epoch schedule (warm-up, decay to
    zero at its end), in epochs at the peak rate: the sum of its steps' rate
    factors over the steps of an epoch — about half its epochs."""
    planned = steps_per_epoch * epochs
    warmup = max(1, int(planned * warmup_share))
    return sum(rate_factor(s, planned, warmup) for s in range(planned)) / max(steps_per_epoch, 1)


def refit_epochs(chosen: int, rate_epochs: float, most: int, steps_per_epoch: int, warmup_share: float) -> int:
    """How long the refit trains: the number of epochs, from ``chosen`` (the
    epoch the inner validation split picked) to ``most``, whose own schedule —
    its rate decaying to zero at its last epoch — does the learning the
    selection run had done by the chosen epoch (``rate_epochs``: the sum of
    its rate factors, in epochs at the peak rate); the closest, the longer on
    a tie. The selection run is planned for more epochs than it may run, so
    at an early-stopped epoch its rate has decayed only part of the way; a
    refit of as many epochs that decays to zero would learn less than the
    model the validation rows judged (4 epochs of an 8-epoch plan: 2.9 epochs
    at the peak rate; a 4-epoch refit: 2.0, a 6-epoch one 3.0). The selection
    run's learning never exceeds its whole plan's, so the refit never plans
    more epochs than were planned (and timed) for it."""
    candidates = range(chosen, max(chosen, most) + 1)
    return min(candidates, key=lambda e: (abs(schedule_epochs(e, steps_per_epoch, warmup_share) - rate_epochs), -e))


def refit_plan(
    chosen: int,
    rate_epochs: float,
    planned: int,
    steps_per_epoch: int,
    warmup_share: float,
    epoch_s: float,
    time_left_s: float,
) -> int:
    """The refit's epochs (0: no refit): ``refit_epochs`` when the time left
    holds that many epochs of ``epoch_s`` seconds, else as many as it holds,
    but never fewer than ``chosen`` — with too little time for those, none."""
    fits = int(time_left_s // max(epoch_s, 1e-9))
    if fits < chosen:
        return 0
    return min(refit_epochs(chosen, rate_epochs, planned, steps_per_epoch, warmup_share), fits)


class _Trainer:
    """One training run of a recipe: the top layers unfrozen, AdamW with
    discriminative rates that warm up over the first ``warmup_share`` of the
    planned steps, then decay linearly to zero at the last planned epoch
    (``planned_epochs``, which may shrink once an epoch is timed)."""

    def __init__(self, run: _Run, recipe: Recipe, rows: int, planned_epochs: int) -> None:
        import torch

        self.run, self.recipe = run, recipe
        unfrozen = run.freeze(recipe.unfreeze_layers)
        self.trainable = [q for layer in unfrozen for q in layer.parameters()] + list(run.head.parameters())
        groups: list[dict[str, Any]] = [{"params": list(run.head.parameters()), "lr": recipe.learning_rate}]
        groups += [
            {"params": list(layer.parameters()), "lr": rate}
            for layer, rate in zip(unfrozen, recipe.layer_rates(len(unfrozen)), strict=True)
        ]
        # The fused kernel: one pass over each parameter per step instead of a dozen (~7% of a MiniLM step on CPU).
        self.optimiser = torch.optim.AdamW(groups, weight_decay=0.01, fused=run.dev.split(":")[0] in ("cpu", "cuda"))
        self.steps_per_epoch = math.ceil(rows / recipe.batch_size)
        self.planned_epochs = planned_epochs
        warmup = max(1, int(self.steps_per_epoch * planned_epochs * recipe.warmup_share))

        def rate(s: int) -> float:
            return rate_factor(s, self.steps_per_epoch * self.planned_epochs, warmup)

        self.rate = rate
        # The learning done so far, in epochs at the peak rate: the sum of the rate factors of the steps taken.
        self.rate_epochs = 0.0
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimiser, rate)
        self.generator = torch.Generator().manual_seed(run.p.seed)
        self.lengths = np.array([len(ids) for ids in run.batches.encoded])
        self.threads: list[int] = []  # the CPU threads of each epoch, picked again before it

    def epoch(
        self,
        rows: np.ndarray,
        epoch: int,
        step: int,
        total_steps: int,
        deadline: float,
        losses: list[tuple[int, float]],
    ) -> tuple[int, bool]:
        """One pass over ``rows`` (shuffled, length-grouped); returns the step
        reached and whether it ran to the end (False: ``deadline`` passed)."""
        import torch

        run, recipe = self.run, self.recipe
        self.threads.append(run.retime_threads())
        run.encoder.train()
        order = rows[torch.randperm(len(rows), generator=self.generator).numpy()]
        for batch in length_grouped(order, self.lengths, recipe.batch_size, self.generator):
            run.check()
            if time.perf_counter() > deadline:  # the budget is a promise: stop mid-epoch
                return step, False
            inputs = run.batches.collate(batch, run.dev)
            features = mean_pool(run.encoder(**inputs).last_hidden_state, inputs["attention_mask"])
            loss = torch.nn.functional.cross_entropy(
                run.head(features),
                run.y_t[torch.from_numpy(batch).to(run.dev)],
                label_smoothing=recipe.label_smoothing,
            )
            self.optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
            self.optimiser.step()
            self.rate_epochs += self.rate(self.schedule.last_epoch) / self.steps_per_epoch
            self.schedule.step()
            step += 1
            value = float(loss.item())
            losses.append((step, value))
            run.report(
                "train", step, total_steps, epoch=epoch, loss=value, learning_rate=self.schedule.get_last_lr()[-1]
            )
        return step, True


def _train_recipe(
    run: _Run,
    recipe: Recipe,
    fit_idx: np.ndarray,
    val_idx: np.ndarray,
    warm_head: dict[str, Any],
    val_features: Any,
    step_offset: int,
    total_steps: int,
    deadline: float,
    refit_share: float = 0.0,
) -> tuple[dict[str, Any], dict[str, Any] | None, np.ndarray | None, list[tuple[int, float]]]:
    """Unfreeze and train one recipe from the warmed-up head; early stopping
    on inner-validation macro F1 (``val_features``: the frozen encoder's, for
    epoch 0's record). The rates warm up over the first tenth of the steps, then decay
    linearly to zero at the last planned epoch; once the first epoch is timed
    (on this machine, under its load), the plan shrinks to the epochs that fit
    before ``deadline``, so the decay still ends. With ``recipe.refit``, the
    plan also keeps time for the refit (``refit_share``: its rows per fit row)
    — or, when fewer than ``min_epochs`` epochs would be left, plans the
    selection run alone (the refit is made afterwards only if the time left
    then holds it). Returns the trial's record, the best
    fine-tuned epoch's weights (and ``"train_s"``, the seconds of one training
    pass over the fit rows) and which validation rows it gets right (None when
    no epoch ran), and the losses."""
    started = time.perf_counter()
    run.head.load_state_dict(warm_head)
    trainer = _Trainer(run, recipe, len(fit_idx), recipe.epochs)
    val_f1, _ = _validate(run, val_features, val_idx)
    history: list[list[float]] = [[0, round(val_f1, 4)]]
    # The chosen fine-tuned epoch: of the epochs from the minimum on (small data needs that many passes;
    # earlier ones only if no later one ran), the latest within the validation noise of their best (trained
    # longer, its rate annealed further; a smaller validation F1 than that is no evidence against it).
    # Epoch 0, the baseline's head, is weighed against it afterwards.
    best_f1 = -1.0
    kept: dict[int, tuple[float, np.ndarray, dict[str, Any]]] = {}  # the epochs within the noise of the best
    losses: list[tuple[int, float]] = []
    step = step_offset
    stale = 0
    epochs_run = 0
    stopped = "epochs"
    epoch = 0
    train_s = 0.0
    while epoch < trainer.planned_epochs:
        epoch_started = time.perf_counter()
        step, complete = trainer.epoch(fit_idx, epoch, step, total_steps, deadline, losses)
        if not complete:
            stopped = "time budget"
        epochs_run += 1
        epoch += 1
        train_s = time.perf_counter() - epoch_started
        val_f1, right = _validate(run, run.encode(val_idx, None), val_idx)
        history.append([epoch, round(val_f1, 4)])
        stale = 0 if val_f1 > best_f1 else stale + 1
        best_f1 = max(best_f1, val_f1)
        state = {
            "encoder": {k: v.detach().clone() for k, v in run.encoder.state_dict().items()},
            "head": copy.deepcopy(run.head.state_dict()),
            "rate_epochs": trainer.rate_epochs,
        }
        kept[epoch] = (val_f1, right, state)
        if epoch >= recipe.min_epochs:  # the epochs before the minimum are candidates only while no later one ran
            kept = {e: k for e, k in kept.items() if e >= recipe.min_epochs}
        top = max(k[0] for k in kept.values())
        kept = {e: k for e, k in kept.items() if k[0] >= top - validation_noise(top, len(val_idx))}
        if stale >= recipe.patience and epoch >= recipe.min_epochs:
            stopped = "early stopping"
            break
        if stopped == "time budget":
            break
        now = time.perf_counter()
        epoch_s = now - epoch_started
        if epoch == 1:
            # Timed on this machine now: the epochs that fit before the deadline (with the refit's, if planned).
            left = deadline - now
            fit = epoch + int(left // max(epoch_s, 1e-9))
            if recipe.refit:
                refit_epoch_s = REFIT_MARGIN * train_s * refit_share
                with_refit = int((left + epoch_s) // max(epoch_s + refit_epoch_s, 1e-9))
                # Too slow for both: the selection run is planned alone, and the refit is still made at the
                # end if the time left holds it then (the first epoch may have met a passing load: the
                # 23:16 benchmark run gave its refit up after a 50 s first epoch, then ran 6 s epochs and
                # finished with half its budget unused).
                if with_refit >= recipe.min_epochs:
                    fit = with_refit
            trainer.planned_epochs = max(1, min(trainer.planned_epochs, fit))
        elif epoch < trainer.planned_epochs and now + epoch_s > deadline:
            # Slower than the first epoch (the machine's load changed): stop rather than overrun.
            stopped = "time budget"
            break
    if stopped == "epochs" and trainer.planned_epochs < recipe.epochs:
        stopped = "time budget"
    best_epoch = max(kept, default=0)
    best_state: dict[str, Any] | None = None
    best_right: np.ndarray | None = None
    chosen_f1 = 0.0
    if kept:
        chosen_f1, best_right, best_state = kept[best_epoch]
        best_state["train_s"] = train_s
    record = {
        "name": recipe.name,
        "hyperparameters": recipe.as_dict(),
        "validation_macro_f1": round(chosen_f1, 4),
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "epochs_planned": trainer.planned_epochs,
        # The learning done by the chosen epoch, in epochs at the peak rate (what the refit's length matches).
        "rate_epochs": round(best_state["rate_epochs"], 3) if best_state is not None else 0.0,
        "stopped_by": stopped,
        "validation_history": history,
        "threads": trainer.threads,
        "loss_history": _downsample(losses),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return record, best_state, best_right, losses


def _refit(
    run: _Run,
    recipe: Recipe,
    epochs: int,
    planned_epochs: int,
    initial: dict[str, Any],
    head_model: Any,
    step_offset: int,
    total_steps: int,
    deadline: float,
) -> tuple[bool, list[tuple[int, float]]]:
    """The chosen recipe again from the start — the encoder's initial weights,
    the head from ``head_model`` (the baseline: the logistic regression on the
    whole training part) — on **every** training row (inner validation
    included), for the ``epochs`` the inner validation split chose, on a
    schedule planned for ``planned_epochs`` (the default: those epochs, so the
    rate decays to zero at the last of them). No validation is left to look
    at: the epoch count is the one chosen. The weights kept are then
    interpolated with those it started from (``recipe.interpolation``,
    WiSE-FT: ``interpolate``). Returns whether it finished before
    ``deadline`` (if not, the caller keeps the selection run's weights) and
    the losses."""
    import torch

    run.encoder.load_state_dict(initial)
    _head_from_logistic(run.head, head_model)
    head_start = copy.deepcopy(run.head.state_dict())
    # Its dropout drawn afresh from the run's seed: the model served depends on the data, the seed and the
    # epochs chosen, not on how many random numbers the selection run happened to draw.
    torch.manual_seed(run.p.seed)
    trainer = _Trainer(run, recipe, len(run.train_idx), planned_epochs)
    losses: list[tuple[int, float]] = []
    step = step_offset
    run.refit_threads = trainer.threads
    for epoch in range(epochs):
        step, complete = trainer.epoch(run.train_idx, epoch, step, total_steps, deadline, losses)
        if not complete:
            return False, losses
    interpolate(run.encoder, initial, recipe.interpolation)
    interpolate(run.head, head_start, recipe.interpolation)
    return True, losses


def interpolate(module: Any, start: dict[str, Any], alpha: float) -> None:
    """WiSE-FT (Wortsman et al., 2022): set ``module``'s weights to ``alpha`` x its own plus
    ``1 - alpha`` x ``start`` (the state it was fine-tuned from; integer buffers stay as they are).
    One model, served as any other. On the benchmark's real text (docs/BENCHMARKS.md, five
    held-out splits) the refit interpolated at 0.6 with the base encoder and the baseline's head
    gained about as much over the baseline on average as the refit itself (+4.0 vs +3.9 points)
    but varied less from split to split (least +2.3 vs +1.2); the selection run's own weights
    (fewer rows, a head warmed up on fewer rows) lost from it, so only the refit is interpolated."""
    import torch

    if alpha >= 1.0:
        return
    with torch.no_grad():
        own = module.state_dict()
        module.load_state_dict(
            {k: torch.lerp(start[k].to(v.dtype), v, alpha) if v.is_floating_point() else v for k, v in own.items()}
        )


def _fit_recipe(run: _Run) -> tuple[list[tuple[int, float]], list[dict[str, Any]], dict[str, Any], int]:
    """features → baseline (and head warm-up) → unfreeze (one trial per recipe) → keep the best."""
    import torch

    p = run.p
    fit_pos, val_pos = inner_split(run.y[run.train_idx], INNER_VALIDATION, p.seed)
    fit_idx, val_idx = run.train_idx[fit_pos], run.train_idx[val_pos]
    everything = np.concatenate([fit_idx, val_idx, run.held_idx])
    started = time.perf_counter()
    features = run.encode(everything, "features").cpu().numpy()
    run.seconds["features"] = time.perf_counter() - started
    seconds_per_row = run.seconds["features"] / max(len(everything), 1)
    n_fit, n_val = len(fit_idx), len(val_idx)
    positions = np.arange(len(everything))
    y_all = run.y[everything]
    baseline, warm, baseline_model = frozen_baseline(
        features,
        y_all,
        positions[:n_fit],
        positions[n_fit : n_fit + n_val],
        positions[n_fit + n_val :],
        run.names,
        p.confidence_threshold,
        p.seed,
    )
    run.baseline = baseline
    _head_from_logistic(run.head, warm)
    warm_head = copy.deepcopy(run.head.state_dict())
    if len(val_idx) == 0:  # too little data for an inner split: the baseline's head it is
        _head_from_logistic(run.head, baseline_model)
        return [], [], {"unfreeze_layers": 0}, 0

    mean_tokens = float(np.mean([len(run.batches.encoded[i]) for i in fit_idx]))
    layers = len(encoder_layers(run.encoder))
    # The budget covers the whole run: what follows training (scoring the
    # held-out rows, saving) is set aside, estimated from the feature pass.
    reserve = RESERVE_S + 2 * seconds_per_row * len(run.held_idx)
    deadline = run.started + p.time_budget_s - reserve
    budget = deadline - time.perf_counter()
    n_train = len(run.train_idx)
    recipes = plan_recipes(
        p.recipe, n_fit, len(run.names), mean_tokens, layers, seconds_per_row, budget, refit_rows=n_train
    )
    total_steps = sum(math.ceil(n_fit / r.batch_size) * r.epochs for r in recipes)
    total_steps += max((math.ceil(n_train / r.batch_size) * r.epochs for r in recipes if r.refit), default=0)
    initial = {k: v.detach().clone() for k, v in run.encoder.state_dict().items()}
    val_features = torch.from_numpy(features[n_fit : n_fit + n_val]).to(run.dev)
    trials: list[dict[str, Any]] = []
    trial_losses: list[list[tuple[int, float]]] = []
    all_losses: list[tuple[int, float]] = []
    best: tuple[float, int, dict[str, Any] | None, np.ndarray | None] = (-1.0, -1, None, None)
    train_started = time.perf_counter()
    for i, recipe in enumerate(recipes):
        if i:
            run.encoder.load_state_dict(initial)
            if time.perf_counter() > deadline:
                break
        # Each trial gets an equal share of what is left (one that stopped early leaves more to the next).
        share = time.perf_counter() + (deadline - time.perf_counter()) / (len(recipes) - i)
        record, state, right, losses = _train_recipe(
            run, recipe, fit_idx, val_idx, warm_head, val_features, len(all_losses), total_steps, share, n_train / n_fit
        )
        all_losses += losses
        trial_losses.append(losses)
        trials.append(record)
        if state is not None and record["validation_macro_f1"] > best[0]:
            best = (record["validation_macro_f1"], i, state, right)
    chosen: dict[str, Any] = {"unfreeze_layers": 0}
    _, i, state, right = best
    for n, t in enumerate(trials):
        t["chosen"] = n == i
    if state is not None and right is not None:
        # The best fine-tune vs epoch 0 (the warmed-up head on the frozen encoder), on the same validation rows.
        run.head.load_state_dict(warm_head)
        f1_0, right_0 = _validate(run, val_features, val_idx)
        check = baseline_check(f1_0, right_0, trials[i]["validation_macro_f1"], right)
        trials[i]["baseline_check"] = check
        if check["baseline_kept"]:
            trials[i]["best_fine_tuned_epoch"] = trials[i]["best_epoch"]
            trials[i]["best_epoch"] = 0
            trials[i]["validation_macro_f1"] = trials[i]["validation_history"][0][1]
            state = None
    if state is None:  # nothing trained, or the baseline is clearly better: the baseline itself
        run.encoder.load_state_dict(initial)
        _head_from_logistic(run.head, baseline_model)
    else:
        trial = trials[i]
        chosen = {k: trial["hyperparameters"][k] for k in RECIPE_KNOBS if k in trial["hyperparameters"]}
        chosen["epochs"] = trial["best_epoch"]
        refitted, refit_losses, epochs = False, list[tuple[int, float]](), 0
        if recipes[i].refit:
            # As long as the selection run's learning by the chosen epoch (``refit_epochs``), or as much of it
            # as the time left holds, never fewer epochs than chosen. Timed from the selection run's last
            # training pass, scaled to every training row, with the margin.
            epochs = refit_plan(
                trial["best_epoch"],
                state["rate_epochs"],
                trial["epochs_planned"],
                math.ceil(n_train / recipes[i].batch_size),
                recipes[i].warmup_share,
                REFIT_MARGIN * state["train_s"] * n_train / n_fit,
                deadline - time.perf_counter(),
            )
            if epochs:
                refitted, refit_losses = _refit(
                    run,
                    recipes[i],
                    epochs,
                    epochs,
                    initial,
                    baseline_model,
                    len(all_losses),
                    total_steps,
                    deadline,
                )
                all_losses += refit_losses
            else:
                recipes[i].refit = False
        # Recorded beside the recipe's knobs: whether the model served is the refit, on how many rows.
        trial["hyperparameters"]["refit"] = recipes[i].refit
        trial["hyperparameters"]["refit_rows"] = n_train if refitted else 0
        trial["hyperparameters"]["refit_epochs"] = epochs if refitted else 0
        trial["refit_threads"] = run.refit_threads
        if refitted:
            chosen["refit_rows"] = n_train
            chosen["epochs"] = epochs
            trial["loss_history"] = _downsample(trial_losses[i] + refit_losses)  # the selection run, then the refit
        else:
            run.encoder.load_state_dict(state["encoder"])
            run.head.load_state_dict(state["head"])
    run.seconds["train"] = time.perf_counter() - train_started
    return all_losses, trials, chosen, len(val_idx)


# ---------------------------------------------------------------- manual


def _fit_manual(run: _Run, cache_features: bool) -> list[tuple[int, float]]:
    """The explicit hyperparameters: head only on cached features, or unfrozen top layers; no early stopping."""
    import torch

    p = run.p
    train_idx, held_idx = run.train_idx, run.held_idx
    generator = torch.Generator().manual_seed(p.seed)
    steps_per_epoch = math.ceil(len(train_idx) / p.batch_size)
    total_train = steps_per_epoch * p.epochs
    unfrozen = run.freeze(p.unfreeze_layers)
    groups: list[dict[str, Any]] = [{"params": run.head.parameters(), "lr": p.learning_rate}]
    if unfrozen:
        groups.append({"params": [q for layer in unfrozen for q in layer.parameters()], "lr": p.encoder_learning_rate})
    optimiser = torch.optim.AdamW(groups, weight_decay=0.0)
    # Cosine decay to zero over the run: the head then settles on the optimum
    # instead of hovering around it.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(total_train, 1))

    started = time.perf_counter()
    run.encoder.eval()
    # The frozen features (the baseline's, and the head's when only the head trains).
    frozen = run.encode(np.concatenate([train_idx, held_idx]), "features")
    run.seconds["features"] = time.perf_counter() - started
    cached = frozen if not unfrozen and cache_features else None
    _manual_baseline(run, frozen.cpu().numpy())

    train_started = time.perf_counter()
    step = 0
    losses: list[tuple[int, float]] = []
    for epoch in range(p.epochs):
        order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
        if unfrozen:
            run.encoder.train()
        for b in range(steps_per_epoch):
            run.check()
            batch = order[b * p.batch_size : (b + 1) * p.batch_size]
            if cached is not None:
                # Positions of these examples in the cached (train + holdout) matrix.
                features = cached[torch.from_numpy(np.searchsorted(train_idx, batch)).to(run.dev)]
            elif unfrozen:
                inputs = run.batches.collate(batch, run.dev)
                features = mean_pool(run.encoder(**inputs).last_hidden_state, inputs["attention_mask"])
            else:
                with torch.inference_mode():
                    inputs = run.batches.collate(batch, run.dev)
                    features = mean_pool(run.encoder(**inputs).last_hidden_state, inputs["attention_mask"])
                features = features.clone()
            loss = torch.nn.functional.cross_entropy(run.head(features), run.y_t[torch.from_numpy(batch).to(run.dev)])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            value = float(loss.item())
            losses.append((step, value))
            run.report("train", step, total_train, epoch=epoch, loss=value, learning_rate=schedule.get_last_lr()[0])
    run.seconds["train"] = time.perf_counter() - train_started
    run.held_cached = frozen[len(train_idx) :] if cached is not None else None
    return losses


def _manual_baseline(run: _Run, features: np.ndarray) -> None:
    """The baseline of a manual run: features in (train, holdout) order; C picked on an inner split of train."""
    n_train = len(run.train_idx)
    fit_pos, val_pos = inner_split(run.y[run.train_idx], INNER_VALIDATION, run.p.seed)
    y_all = run.y[np.concatenate([run.train_idx, run.held_idx])]
    run.baseline, _, _ = frozen_baseline(
        features,
        y_all,
        fit_pos,
        val_pos,
        np.arange(n_train, len(y_all)),
        run.names,
        run.p.confidence_threshold,
        run.p.seed,
    )


# ---------------------------------------------------------------- evaluate and save


def _evaluate(run: _Run) -> ClassificationReport:
    import torch

    started = time.perf_counter()
    run.encoder.eval()
    with torch.inference_mode():
        held = run.held_cached
        features = held if held is not None else run.encode(run.held_idx, "evaluate")
        probs = torch.softmax(run.head(features), dim=1).cpu().numpy()
    report = classification_report(run.y[run.held_idx], probs, run.names, threshold=run.p.confidence_threshold)
    run.seconds["evaluate"] = time.perf_counter() - started
    return report


def _save(run: _Run, output_dir: Path) -> list[str]:
    from safetensors.torch import save_file

    output_dir.mkdir(parents=True, exist_ok=True)
    run.encoder.save_pretrained(str(output_dir), safe_serialization=True)
    run.tokenizer.save_pretrained(str(output_dir))
    head = run.head
    save_file(
        {"weight": head.weight.detach().cpu().contiguous(), "bias": head.bias.detach().cpu().contiguous()},
        str(output_dir / HEAD_FILE),
        metadata={"family": "text-classifier"},
    )
    (output_dir / CLASSIFIER_CONFIG).write_text(
        json.dumps(
            {
                "family": "text-classifier",
                "labels": run.names,
                "pooling": "mean",
                "max_length": run.p.max_length,
                "confidence_threshold": run.p.confidence_threshold,
            },
            indent=1,
        )
    )
    return sorted(f.name for f in output_dir.iterdir() if f.is_file())


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
        cache_features: with recipe "manual" and ``unfreeze_layers == 0``,
            train the head on features computed once (True) or run the frozen
            encoder again every epoch (False, the naive loop; kept for the benchmark).

    Returns:
        A ``FitResult`` with the evaluation on the held-out split, the
        frozen-embedding baseline on the same split and the recipe trials.
    """
    import torch

    p = params or FitParams()
    run = _Run(base_dir, texts, labels, p, progress, should_stop, device)
    chosen: dict[str, Any] = {}
    inner_rows = 0
    threads_before = torch.get_num_threads()
    threads = 0
    try:
        if p.recipe == "manual":
            losses = _fit_manual(run, cache_features)
        else:
            if run.dev == "cpu":
                sample = run.train_idx[: min(len(run.train_idx), 32)]
                run.thread_probe = run.batches.collate(sample, run.dev)
                threads = run.retime_threads()
            losses, run.trials, chosen, inner_rows = _fit_recipe(run)
            run.retime_threads()  # for scoring the held-out rows
        evaluation = _evaluate(run)
        files = _save(run, output_dir)
    finally:
        torch.set_num_threads(threads_before)
    run.seconds["total"] = time.perf_counter() - run.started
    used = asdict(p) | chosen
    return FitResult(
        output_dir=output_dir,
        files=files,
        parameter_count=sum(int(q.numel()) for q in run.encoder.parameters())
        + sum(int(q.numel()) for q in run.head.parameters()),
        labels=run.names,
        report=evaluation,
        loss_history=losses,
        params=used,
        device=run.dev,
        train_rows=len(run.train_idx),
        holdout_rows=len(run.held_idx),
        seconds=run.seconds,
        baseline=run.baseline,
        trials=run.trials,
        recipe=p.recipe,
        inner_validation_rows=inner_rows,
        threads=(threads or torch.get_num_threads()) if run.dev == "cpu" else 0,
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
