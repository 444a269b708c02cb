from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runners.families import text_classifier as tc
from runners.safetensors_info import safetensors_header
from runners.synthetic_text import support_tickets


@pytest.fixture(scope="module")
def data() -> tuple[list[str], list[str]]:
    rows = support_tickets(160, seed=1, ambiguous_share=0.0)
    return [t for t, _ in rows], [label for _, label in rows]


def test_head_only_fit_is_deterministic_and_saves_safetensors(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]]
) -> None:
    texts, labels = data
    params = tc.FitParams(epochs=15, learning_rate=0.05, seed=4)
    seen: list[tc.Progress] = []
    a = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "a", params, progress=seen.append)
    b = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "b", params)
    assert (tmp_path / "a" / tc.HEAD_FILE).read_bytes() == (tmp_path / "b" / tc.HEAD_FILE).read_bytes()
    assert a.report.as_dict() == b.report.as_dict()
    assert {f for f in a.files if f.endswith((".bin", ".pt", ".pkl", ".pickle"))} == set()
    assert {"model.safetensors", "head.safetensors", "classifier.json", "config.json"} <= set(a.files)
    assert safetensors_header(tmp_path / "a" / tc.HEAD_FILE)["weight"]["shape"] == [4, 32]
    assert a.labels == ["account", "billing", "shipping", "technical"]
    assert a.train_rows + a.holdout_rows == 160
    assert {p.phase for p in seen} == {"features", "train"}
    losses = [loss for _, loss in a.loss_history]
    assert losses[-1] < losses[0]
    # The head learns something even on a random tiny encoder.
    assert a.report.accuracy > 0.4
    probs = tc.predict(tmp_path / "a", texts[:5])
    assert probs.shape == (5, 4)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_cached_features_give_the_naive_loops_result(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]]
) -> None:
    texts, labels = data
    params = tc.FitParams(epochs=6, learning_rate=0.05)
    cached = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "c", params)
    naive = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "n", params, cache_features=False)
    assert cached.report.confusion == naive.report.confusion
    assert cached.loss_history[-1][1] == pytest.approx(naive.loss_history[-1][1], rel=1e-3)


def test_unfreezing_the_last_layer_trains_the_encoder(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]]
) -> None:
    from safetensors.numpy import load_file

    texts, labels = data
    tc.fit(
        tiny_bert_dir,
        texts,
        labels,
        tmp_path / "u",
        tc.FitParams(epochs=2, unfreeze_layers=1, encoder_learning_rate=1e-3),
    )
    before, after = (
        load_file(str(tiny_bert_dir / "model.safetensors")),
        load_file(str(tmp_path / "u" / "model.safetensors")),
    )
    last = next(k for k in after if "layer.1." in k and k.endswith("query.weight"))
    first = next(k for k in after if "layer.0." in k and k.endswith("query.weight"))
    assert not np.array_equal(before[last], after[last])
    assert np.array_equal(before[first], after[first])


def test_should_stop_cancels_at_the_next_step(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]]
) -> None:
    texts, labels = data
    steps: list[int] = []
    with pytest.raises(tc.Cancelled):
        tc.fit(
            tiny_bert_dir,
            texts,
            labels,
            tmp_path / "x",
            tc.FitParams(epochs=50),
            progress=lambda p: steps.append(p.step) if p.phase == "train" else None,
            should_stop=lambda: len(steps) >= 3,
        )
    assert len(steps) == 3
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 0}, "epochs must be between"),
        ({"lr": 1}, "unknown hyperparameter"),
        ({"batch_size": "many"}, "batch_size must be a number"),
        ({"epochs": 2.5}, "whole number"),
    ],
)
def test_hyperparameters_are_validated(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tc.FitParams.from_dict(values)


@pytest.mark.real_weights
def test_real_minilm_head_only_learns_the_tickets(tmp_path: Path) -> None:
    from runners.testing import minilm_dir

    rows = support_tickets(400, seed=7)
    result = tc.fit(
        minilm_dir(),
        [t for t, _ in rows],
        [label for _, label in rows],
        tmp_path / "m",
        tc.FitParams(epochs=30, learning_rate=0.01),
    )
    assert result.report.macro_precision > 0.85
    assert result.parameter_count > 22_000_000


def test_inner_split_is_carved_from_the_training_part_only() -> None:
    from runners.splits import inner_split, stratified_split

    y = np.array([0] * 40 + [1] * 30 + [2] * 2)
    train, held = stratified_split(y, 0.2, 3)
    fit_pos, val_pos = inner_split(y[train], 0.15, 3)
    assert set(fit_pos).isdisjoint(val_pos)
    assert sorted([*fit_pos, *val_pos]) == list(range(len(train)))
    val_rows = set(train[val_pos].tolist())
    assert val_rows.isdisjoint(held.tolist())
    # Both big classes are represented; the 2-example class stays in the fit part.
    assert {int(y[i]) for i in val_rows} == {0, 1}


@pytest.mark.parametrize(
    ("values", "recipe"),
    [({}, "default"), ({"seed": 3}, "default"), ({"epochs": 5}, "manual"), ({"recipe": "auto"}, "auto")],
)
def test_recipe_defaults_to_default_unless_knobs_are_given(values: dict[str, object], recipe: str) -> None:
    params = tc.FitParams.from_dict(values)
    assert params.recipe == recipe
    # What a job stores parses back to the same parameters.
    assert tc.FitParams.from_dict(params.as_dict()) == params


def test_a_recipe_refuses_the_knobs_it_chooses() -> None:
    with pytest.raises(ValueError, match="chosen by the 'default' recipe"):
        tc.FitParams.from_dict({"recipe": "default", "epochs": 3})
    with pytest.raises(ValueError, match="recipe must be one of"):
        tc.FitParams.from_dict({"recipe": "fast"})


def test_every_run_scores_the_frozen_embedding_baseline_on_the_same_split(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]]
) -> None:
    from sklearn.linear_model import LogisticRegression

    from runners.splits import stratified_split

    texts, labels = data
    result = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "b", tc.FitParams(epochs=3, seed=2))
    # An independent logistic regression on the frozen encoder's pooled embeddings, same split and C.
    tokenizer, encoder = tc.load_encoder(tiny_bert_dir, "cpu")
    x = tc.mean_pooled_features(tokenizer, encoder, texts)
    names = sorted(set(labels))
    y = np.array([names.index(label) for label in labels])
    train, held = stratified_split(y, 0.2, 2)
    model = LogisticRegression(C=result.baseline["C"], max_iter=2000, random_state=2).fit(x[train], y[train])
    expected = float(np.mean(model.predict(x[held]) == y[held]))
    assert result.baseline["accuracy"] == pytest.approx(expected, abs=1.5 / len(held))
    comparison = result.comparison()
    delta = 100 * (result.report.macro_precision - result.baseline["macro_precision"])
    assert comparison["macro_precision_points"] == pytest.approx(delta, abs=0.01)
    assert comparison["beats_baseline"] is (delta > 0)


def test_default_recipe_unfreezes_with_early_stopping_and_keeps_the_best_epoch(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]]
) -> None:
    texts, labels = data
    seen: list[tc.Progress] = []
    result = tc.fit(
        tiny_bert_dir, texts, labels, tmp_path / "d", tc.FitParams.from_dict({"seed": 1}), progress=seen.append
    )
    assert result.recipe == "default"
    assert result.train_rows + result.holdout_rows == 160
    assert 0 < result.inner_validation_rows < result.train_rows
    [trial] = result.trials
    assert trial["chosen"] is True
    history = trial["validation_history"]
    assert history[0][0] == 0  # epoch 0: the warmed-up head on the frozen encoder
    assert trial["epochs_run"] >= 4  # the minimum before early stopping may stop
    check = trial["baseline_check"]
    if check["baseline_kept"]:
        assert (trial["best_epoch"], trial["validation_macro_f1"]) == (0, history[0][1])
    else:  # the best fine-tuned epoch, the later one on a tie
        best = max(f1 for e, f1 in history if e >= 1)
        assert trial["validation_macro_f1"] == best
        assert trial["best_epoch"] == max(e for e, f1 in history if e >= 1 and f1 == best)
    assert trial["hyperparameters"]["unfreeze_layers"] == 2  # small data: every layer of the tiny encoder
    assert trial["loss_history"]
    assert trial["epochs_run"] >= 1
    assert all(0 <= p.step <= p.total_steps for p in seen if p.phase == "train")
    # The saved model is the kept epoch's: predicting the held-out rows reproduces the report.
    from runners.splits import stratified_split

    names = sorted(set(labels))
    y = np.array([names.index(label) for label in labels])
    _, held = stratified_split(y, 0.2, 1)
    probs = tc.predict(tmp_path / "d", [texts[i] for i in held])
    assert float(np.mean(probs.argmax(axis=1) == y[held])) == pytest.approx(result.report.accuracy)


def test_auto_recipe_tries_several_recipes_and_picks_by_validation_f1(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]]
) -> None:
    texts, labels = data
    result = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "a", tc.FitParams.from_dict({"recipe": "auto"}))
    assert len(result.trials) >= 2
    assert len({t["name"] for t in result.trials}) == len(result.trials)
    [chosen] = [t for t in result.trials if t["chosen"]]
    assert chosen["validation_macro_f1"] == max(t["validation_macro_f1"] for t in result.trials)
    assert result.baseline["macro_precision"] >= 0


def test_plan_recipes_follows_data_size_labels_and_budget() -> None:
    # Small data, 8 labels, a budget that fits plenty of all-layer epochs:
    # every layer, at most 8 epochs, early stopping only from epoch 4 on.
    [small] = tc.plan_recipes("default", 800, 8, 10.0, 6, 0.002, 300)
    assert (small.unfreeze_layers, small.epochs, small.min_epochs, small.patience) == (6, 8, 4, 2)
    # A slower (loaded) machine or a tighter budget: fewer top layers, still at least 4 epochs.
    [tight] = tc.plan_recipes("default", 800, 8, 10.0, 6, 0.02, 300)
    assert 1 <= tight.unfreeze_layers < 6
    assert 4 <= tight.epochs <= 8
    # Many labels, few validation rows each: a noisy validation F1, so more patience.
    [many] = tc.plan_recipes("default", 800, 40, 10.0, 6, 0.002, 300)
    assert many.patience == 3
    # Large data: fewer passes over it.
    [large] = tc.plan_recipes("default", 50_000, 6, 20.0, 6, 0.001, 3000)
    assert (large.unfreeze_layers, large.epochs, large.min_epochs) == (6, 4, 2)
    # A budget that fits no epoch at all: the warmed-up head only.
    assert tc.plan_recipes("default", 800, 6, 20.0, 6, 1.0, 60) == []
    auto = tc.plan_recipes("auto", 800, 6, 20.0, 6, 0.001, 600)
    assert len(auto) == 3
    assert len({(r.unfreeze_layers, r.encoder_learning_rate, r.layer_decay) for r in auto}) == 3
    # Auto with a budget for one recipe only: the default's plan.
    assert tc.plan_recipes("auto", 800, 6, 20.0, 6, 0.012, 200) == tc.plan_recipes(
        "default", 800, 6, 20.0, 6, 0.012, 200
    )


def test_discriminative_rates_decay_down_the_layers() -> None:
    recipe = tc.Recipe("r", 3, 4, encoder_learning_rate=1e-4, layer_decay=0.5)
    assert recipe.layer_rates(3) == pytest.approx([2.5e-5, 5e-5, 1e-4])
    assert tc.Recipe("flat", 2, 4).layer_rates(2) == [5e-5, 5e-5]


def _fake_validation(
    epoch_0: tuple[float, float], tuned: tuple[float, float]
) -> Callable[[Any, Any, np.ndarray], tuple[float, np.ndarray]]:
    """A stand-in for ``tc._validate``: (macro F1, share of rows right) for epoch 0
    — the first call, on the frozen features, and any later call on them — and for every fine-tuned epoch."""
    frozen: list[Any] = []

    def fake(run: Any, features: Any, positions: np.ndarray) -> tuple[float, np.ndarray]:
        if not frozen:
            frozen.append(features)
        f1, share = epoch_0 if features is frozen[0] else tuned
        return f1, np.arange(len(positions)) < round(share * len(positions))

    return fake


def test_early_stopping_waits_for_the_minimum_epochs_and_keeps_epoch_0_when_clearly_better(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    texts, labels = data
    recipe = tc.Recipe("r", 2, 8, encoder_learning_rate=1e-3, layer_decay=0.5, min_epochs=4, patience=2)
    monkeypatch.setattr(tc, "plan_recipes", lambda *a, **k: [copy.deepcopy(recipe)])
    # Every fine-tuned epoch gets half the validation rows wrong that epoch 0 gets right.
    monkeypatch.setattr(tc, "_validate", _fake_validation((0.9, 1.0), (0.5, 0.5)))
    groups: list[list[float]] = []

    class SpyAdamW(torch.optim.AdamW):
        def __init__(self, params: Any, **kw: Any) -> None:
            super().__init__(params, **kw)
            groups.append([g["lr"] for g in self.param_groups])

    monkeypatch.setattr(torch.optim, "AdamW", SpyAdamW)
    result = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "e", tc.FitParams.from_dict({"seed": 3}))
    [trial] = result.trials
    # Patience 2 would have stopped after epoch 3 (the later epoch wins ties); the minimum is 4.
    assert (trial["epochs_run"], trial["stopped_by"]) == (4, "early stopping")
    assert [e for e, _ in trial["validation_history"]] == [0, 1, 2, 3, 4]
    # The head, then the tiny encoder's 2 layers, lowest first, at decaying rates.
    assert groups == [[pytest.approx(2e-3), pytest.approx(5e-4), pytest.approx(1e-3)]]
    # Epoch 0 is better on validation: the model is the baseline itself.
    assert trial["baseline_check"]["baseline_kept"] is True
    assert (trial["best_epoch"], trial["best_fine_tuned_epoch"]) == (0, 4)
    assert result.report.macro_precision == pytest.approx(result.baseline["macro_precision"])
    assert result.params["unfreeze_layers"] == 0


def test_a_fine_tune_that_matches_epoch_0_on_validation_is_kept(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, labels = data
    recipe = tc.Recipe("r", 2, 6, encoder_learning_rate=1e-3, min_epochs=4, patience=2)
    monkeypatch.setattr(tc, "plan_recipes", lambda *a, **k: [copy.deepcopy(recipe)])
    monkeypatch.setattr(tc, "_validate", _fake_validation((0.8, 0.9), (0.8, 0.95)))
    result = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "k", tc.FitParams.from_dict({"seed": 3}))
    [trial] = result.trials
    check = trial["baseline_check"]
    n = result.inner_validation_rows
    assert (check["rows_only_baseline_right"], check["rows_only_fine_tune_right"]) == (
        0,
        round(0.95 * n) - round(0.9 * n),
    )
    assert check["rows_only_fine_tune_right"] >= 1
    assert check["baseline_kept"] is False
    assert trial["best_epoch"] == 4  # every fine-tuned epoch ties: the latest before early stopping
    assert result.params["unfreeze_layers"] == 2


def test_baseline_check_keeps_the_baseline_only_when_it_scores_higher() -> None:
    right = np.ones(40, dtype=bool)
    ten_wrong = np.arange(40) >= 10
    kept = tc.baseline_check(0.9, right, 0.7, ten_wrong)
    assert kept["baseline_kept"] is True
    assert (kept["rows_only_baseline_right"], kept["rows_only_fine_tune_right"]) == (10, 0)
    assert kept["sign_test_p_value"] < 0.01
    assert tc.baseline_check(0.9, ten_wrong, 0.9, right)["baseline_kept"] is False  # a tie: the fine-tune
    # Higher, but on 3 rows against 1 (sign test p = 0.31): no evidence, the fine-tune is kept.
    weak = tc.baseline_check(0.85, np.arange(40) != 0, 0.8, ~np.isin(np.arange(40), [1, 2, 3]))
    assert (weak["rows_only_baseline_right"], weak["rows_only_fine_tune_right"]) == (3, 1)
    assert weak["sign_test_p_value"] == pytest.approx(0.3125)
    assert weak["baseline_kept"] is False
    # The noise that bounds the choice of epoch: one standard error of 40 rows at 0.8 is 6.3 points.
    assert tc.validation_noise(0.8, 40) == pytest.approx(0.0632, abs=1e-4)
    assert tc.baseline_check(0.8, right, 0.9, right)["sign_test_p_value"] == 1.0


def test_length_grouped_batches_are_a_shuffled_partition_with_less_padding() -> None:
    import torch

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=500)
    order = rng.permutation(500)
    batches = tc.length_grouped(order, lengths, 16, torch.Generator().manual_seed(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    assert all(1 <= len(b) <= 16 for b in batches)

    def padded(bs: list[np.ndarray]) -> int:
        return sum(len(b) * int(lengths[b].max()) for b in bs)

    assert padded(batches) < 0.8 * padded([order[i : i + 16] for i in range(0, 500, 16)])
    longest = [int(lengths[b].max()) for b in batches]
    assert longest != sorted(longest)  # still shuffled


def test_when_no_recipe_fits_the_budget_the_default_is_the_baseline_itself(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, labels = data
    monkeypatch.setattr(tc, "plan_recipes", lambda *a, **k: [])
    result = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "n", tc.FitParams.from_dict({"seed": 5}))
    assert result.trials == []
    assert result.params["unfreeze_layers"] == 0
    # Never worse than five lines of scikit-learn: the same predictions on the same split.
    assert result.report.macro_precision == pytest.approx(result.baseline["macro_precision"])
    assert result.report.accuracy == pytest.approx(result.baseline["accuracy"])
    assert result.comparison()["beats_baseline"] is False


def test_the_chosen_epochs_are_refit_on_every_training_row_from_the_start(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inner validation picks epoch 2 of a 6-epoch plan (early stopping after
    4); the served model is the same recipe trained again from the base
    encoder and the baseline's head on all the training rows (inner
    validation included) for the epochs that match the selection run's
    learning by epoch 2 — 3, its own rate decaying to zero at the last."""

    from runners.splits import stratified_split

    texts, labels = data
    recipe = tc.Recipe("r", 2, 6, encoder_learning_rate=1e-3, min_epochs=2, patience=2, refit=True)
    monkeypatch.setattr(tc, "plan_recipes", lambda *a, **k: [copy.deepcopy(recipe)])
    scores = iter([0.6, 0.9, 0.7, 0.7])  # fine-tuned epochs 1-4: epoch 2 is best; epoch 0 (frozen) 0.5
    frozen: list[Any] = []

    def fake(run: Any, features: Any, positions: np.ndarray) -> tuple[float, np.ndarray]:
        frozen.append(frozen[0] if frozen else features)
        return (0.5 if features is frozen[0] else next(scores)), np.ones(len(positions), dtype=bool)

    monkeypatch.setattr(tc, "_validate", fake)
    passes: list[tuple[list[int], int, float]] = []
    trainers: list[tuple[int, float]] = []
    real_epoch, real_init = tc._Trainer.epoch, tc._Trainer.__init__

    def spy_init(self: Any, run: Any, recipe: Any, rows: int, planned: int) -> None:
        trainers.append((rows, float(sum(p.detach().double().sum() for p in run.encoder.parameters()))))
        real_init(self, run, recipe, rows, planned)

    def spy_epoch(self: Any, rows: np.ndarray, epoch: int, *a: Any) -> tuple[int, bool]:
        passes.append((sorted(rows.tolist()), epoch, float(self.run.head.bias.detach().sum())))
        return real_epoch(self, rows, epoch, *a)

    monkeypatch.setattr(tc._Trainer, "__init__", spy_init)
    monkeypatch.setattr(tc._Trainer, "epoch", spy_epoch)
    seen: list[tc.Progress] = []
    result = tc.fit(
        tiny_bert_dir, texts, labels, tmp_path / "r", tc.FitParams.from_dict({"seed": 2}), progress=seen.append
    )
    [trial] = result.trials
    assert (trial["best_epoch"], trial["epochs_run"], trial["stopped_by"]) == (2, 4, "early stopping")
    names = sorted(set(labels))
    y = np.array([names.index(label) for label in labels])
    train, held = stratified_split(y, 0.2, 2)
    # 4 selection epochs on the fit part, then the refit: 3 epochs on every training row.
    assert [len(rows) for rows, _, _ in passes[:4]] == [train.size - result.inner_validation_rows] * 4
    assert [(rows, epoch) for rows, epoch, _ in passes[4:]] == [(train.tolist(), e) for e in range(3)]
    # Epoch 2 of a 6-epoch plan: 1.5 epochs at the peak rate; a 3-epoch refit decayed to zero does as much.
    assert trial["epochs_planned"] == 6
    assert trial["rate_epochs"] == pytest.approx(1.5, abs=0.2)
    # Both runs start from the base encoder's weights.
    assert [rows for rows, _ in trainers] == [train.size - result.inner_validation_rows, train.size]
    assert trainers[0][1] == pytest.approx(trainers[1][1], rel=1e-12)
    assert trial["hyperparameters"]["refit"] is True
    assert trial["hyperparameters"]["refit_rows"] == train.size == result.params["refit_rows"]
    assert trial["hyperparameters"]["refit_epochs"] == 3 == result.params["epochs"]
    # The CPU threads are picked again before every epoch of both runs.
    assert len(trial["threads"]) == 4
    assert len(trial["refit_threads"]) == 3
    assert all(0 <= p.step <= p.total_steps for p in seen if p.phase == "train")
    # The refit starts from the baseline's head (fit on every training row), which predicts like the baseline.
    assert passes[4][2] != passes[0][2]
    # What is saved is the refit model: predicting the held-out rows reproduces the report.
    probs = tc.predict(tmp_path / "r", [texts[i] for i in held])
    assert float(np.mean(probs.argmax(axis=1) == y[held])) == pytest.approx(result.report.accuracy)


def test_plan_recipes_keeps_time_for_the_refit_or_gives_it_up_before_depth() -> None:
    # Plenty of time: every layer, and the refit planned.
    [roomy] = tc.plan_recipes("default", 800, 8, 10.0, 6, 0.002, 300, refit_rows=940)
    assert (roomy.unfreeze_layers, roomy.refit, roomy.epochs) == (6, True, 8)
    # Each planned epoch costs the selection pass and the refit's: fewer epochs than without it.
    [with_refit] = tc.plan_recipes("default", 800, 8, 10.0, 6, 0.006, 300, refit_rows=940)
    [without] = tc.plan_recipes("default", 800, 8, 10.0, 6, 0.006, 300)
    assert with_refit.refit
    assert not without.refit
    assert (with_refit.unfreeze_layers, without.unfreeze_layers) == (6, 6)
    assert 4 <= with_refit.epochs < without.epochs
    # Too little time for both: every layer still, without the refit.
    [tight] = tc.plan_recipes("default", 800, 8, 10.0, 6, 0.009, 300, refit_rows=940)
    assert (tight.unfreeze_layers, tight.refit) == (6, False)
    assert tight.epochs >= 4


def test_the_latest_epoch_within_the_validation_noise_of_the_best_is_chosen(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Epoch 2 scores best, epochs 3-4 lower by less than one standard error of
    the inner validation split: epoch 4 (trained longest) is chosen; an epoch
    clearly below the best is not; nor one before the minimum of epochs."""
    texts, labels = data
    recipe = tc.Recipe("r", 2, 4, encoder_learning_rate=1e-3, min_epochs=2, patience=5)
    monkeypatch.setattr(tc, "plan_recipes", lambda *a, **k: [copy.deepcopy(recipe)])

    def run_with(scores: list[float]) -> dict[str, Any]:
        left = iter(scores)
        frozen: list[Any] = []

        def fake(run: Any, features: Any, positions: np.ndarray) -> tuple[float, np.ndarray]:
            frozen.append(frozen[0] if frozen else features)
            return (0.5 if features is frozen[0] else next(left)), np.ones(len(positions), dtype=bool)

        monkeypatch.setattr(tc, "_validate", fake)
        result = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "w", tc.FitParams.from_dict({"seed": 2}))
        [trial] = result.trials
        noise = tc.validation_noise(max(scores), result.inner_validation_rows)
        assert 0.03 < noise < 0.1
        return trial

    within = run_with([0.80, 0.90, 0.88, 0.86])
    assert (within["best_epoch"], within["validation_macro_f1"]) == (4, 0.86)
    clear = run_with([0.80, 0.90, 0.88, 0.70])
    assert (clear["best_epoch"], clear["validation_macro_f1"]) == (3, 0.88)
    # Epoch 1, before the minimum of 2, scores best: not a candidate once later epochs ran.
    early = run_with([0.95, 0.80, 0.82, 0.84])
    assert (early["best_epoch"], early["validation_macro_f1"]) == (4, 0.84)


def test_the_refit_matches_the_selection_runs_learning_by_the_chosen_epoch() -> None:
    """An 8-epoch plan early-stopped at epoch 4 has done 2.9 epochs of learning
    at the peak rate (its rate decayed only half-way): the refit, decaying to
    zero at its own end, needs 6 epochs to do as much; a plan that ran to its
    end is refit for as many epochs; never fewer than chosen, never more than planned."""
    steps = 42  # selection steps per epoch

    def learning(planned: int, chosen: int) -> float:
        warmup = max(1, int(steps * planned * 0.1))
        return sum(tc.rate_factor(s, steps * planned, warmup) for s in range(steps * chosen)) / steps

    assert learning(8, 4) == pytest.approx(2.9, abs=0.05)
    assert tc.schedule_epochs(6, 60, 0.1) == pytest.approx(3.0, abs=0.05)
    assert tc.refit_epochs(4, learning(8, 4), 8, 60, 0.1) == 6
    assert tc.refit_epochs(6, learning(7, 6), 7, 60, 0.1) == 7
    for planned in range(4, 9):
        assert tc.refit_epochs(planned, learning(planned, planned), planned, 60, 0.1) == planned
        for chosen in range(1, planned + 1):
            assert chosen <= tc.refit_epochs(chosen, learning(planned, chosen), planned, 60, 0.1) <= planned


def test_the_longer_refit_is_honoured_when_the_time_left_holds_it_and_cut_when_not() -> None:
    area = 2.9  # epoch 4 of an 8-epoch plan: 6 refit epochs match it
    assert tc.refit_plan(4, area, 8, 60, 0.1, epoch_s=10.0, time_left_s=100.0) == 6
    # Time for 5 epochs only: 5, still more than chosen.
    assert tc.refit_plan(4, area, 8, 60, 0.1, epoch_s=10.0, time_left_s=55.0) == 5
    # Time for exactly the chosen 4: those.
    assert tc.refit_plan(4, area, 8, 60, 0.1, epoch_s=10.0, time_left_s=45.0) == 4
    # Not even the chosen epochs fit: no refit (the selection run's weights are served).
    assert tc.refit_plan(4, area, 8, 60, 0.1, epoch_s=10.0, time_left_s=35.0) == 0


def test_the_cpu_threads_are_picked_again_before_every_epoch(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load moves during a run: the thread count timed at the start is timed
    again before each epoch (and before scoring), and each epoch runs with its own."""
    import torch

    texts, labels = data
    recipe = tc.Recipe("r", 2, 3, encoder_learning_rate=1e-3, min_epochs=3, patience=5)
    monkeypatch.setattr(tc, "plan_recipes", lambda *a, **k: [copy.deepcopy(recipe)])
    picks = iter([2, 1, 2, 1, 2, 1, 2])
    timed: list[bool] = []

    def fake_pick(encoder: Any, inputs: dict[str, Any], warm_up: bool = True) -> int:
        timed.append(warm_up)
        threads = next(picks)
        torch.set_num_threads(threads)
        return threads

    used: list[int] = []
    real_step = torch.optim.AdamW.step

    def spy_step(self: Any, *a: Any, **k: Any) -> Any:
        used.append(torch.get_num_threads())
        return real_step(self, *a, **k)

    monkeypatch.setattr(tc, "pick_threads", fake_pick)
    monkeypatch.setattr(torch.optim.AdamW, "step", spy_step)
    result = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "t", tc.FitParams.from_dict({"seed": 2}), device="cpu")
    [trial] = result.trials
    # At the start (with a warm-up pass), then before each of the 3 epochs, then before scoring.
    assert result.threads == 2
    assert trial["threads"] == [1, 2, 1]
    assert timed == [True, False, False, False, False]
    assert set(used) == {1, 2}


def test_a_slow_first_epoch_does_not_give_up_the_refit_when_time_is_left_at_the_end(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first epoch meets a passing load (60 s of a 300 s budget): the
    selection run is planned alone (4 epochs, no time kept for the refit); the
    later epochs take 1 s, so at the end the time left holds the refit — made."""
    import time as real_time
    import types

    texts, labels = data
    recipe = tc.Recipe("r", 2, 8, encoder_learning_rate=1e-3, min_epochs=2, patience=10, refit=True)
    monkeypatch.setattr(tc, "plan_recipes", lambda *a, **k: [copy.deepcopy(recipe)])
    clock = [1000.0]
    monkeypatch.setattr(tc, "time", types.SimpleNamespace(perf_counter=lambda: clock[0], sleep=real_time.sleep))
    calls: list[int] = []
    real_epoch = tc._Trainer.epoch

    def timed_epoch(self: Any, *a: Any, **k: Any) -> tuple[int, bool]:
        out = real_epoch(self, *a, **k)
        clock[0] += 60.0 if not calls else 1.0
        calls.append(len(calls))
        return out

    monkeypatch.setattr(tc._Trainer, "epoch", timed_epoch)
    result = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "s", tc.FitParams.from_dict({"seed": 2}), device="cpu")
    [trial] = result.trials
    assert trial["epochs_planned"] == 4  # 1 + (about 235 s left) // 60 s, no refit epochs kept in the plan
    assert trial["epochs_run"] == 4
    assert trial["hyperparameters"]["refit"] is True
    assert trial["hyperparameters"]["refit_rows"] == result.train_rows
    assert len(calls) == 4 + trial["hyperparameters"]["refit_epochs"]


def test_interpolate_mixes_the_weights_with_the_start_and_keeps_integer_buffers() -> None:
    import torch

    module = torch.nn.Linear(3, 2)
    module.register_buffer("ids", torch.arange(4))
    start = {k: torch.zeros_like(v) if v.is_floating_point() else v + 7 for k, v in module.state_dict().items()}
    tuned = copy.deepcopy(module.state_dict())
    tc.interpolate(module, start, 1.0)  # 1.0: the fine-tuned weights as they are
    assert all(torch.equal(v, tuned[k]) for k, v in module.state_dict().items())
    tc.interpolate(module, start, 0.6)
    assert torch.allclose(module.weight, 0.6 * tuned["weight"])
    assert torch.allclose(module.bias, 0.6 * tuned["bias"])
    assert torch.equal(module.ids, torch.arange(4))
    back = {k: v.clone() for k, v in module.state_dict().items()}
    tc.interpolate(module, tuned, 0.0)  # 0.0: the start itself
    assert torch.allclose(module.weight, tuned["weight"])
    assert not torch.allclose(back["weight"], tuned["weight"])


def test_the_default_recipe_serves_the_refit_interpolated_with_its_start(
    tiny_bert_dir: Path, tmp_path: Path, data: tuple[list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """WiSE-FT: the model saved is 0.6 x the refit's weights + 0.4 x those it
    started from (the base encoder, the baseline's head); the trial records
    the weight."""
    import torch
    from safetensors.torch import load_file

    texts, labels = data
    [planned] = tc.plan_recipes("default", 800, 8, 10.0, 6, 0.002, 300, refit_rows=940)
    assert planned.interpolation == tc.DEFAULT_RECIPE["interpolation"] == 0.6
    recipe = tc.Recipe("r", 2, 2, encoder_learning_rate=1e-3, min_epochs=1, refit=True, interpolation=0.6)
    monkeypatch.setattr(tc, "plan_recipes", lambda *a, **k: [copy.deepcopy(recipe)])
    monkeypatch.setattr(tc, "_validate", lambda run, f, pos: (0.5, np.ones(len(pos), dtype=bool)))
    starts: list[dict[str, Any]] = []
    ends: list[dict[str, Any]] = []
    real_epoch = tc._Trainer.epoch

    def spy_epoch(self: Any, rows: np.ndarray, epoch: int, *a: Any) -> tuple[int, bool]:
        state = {**{f"e.{k}": v.clone() for k, v in self.run.encoder.state_dict().items()}}
        state |= {f"h.{k}": v.clone() for k, v in self.run.head.state_dict().items()}
        if epoch == 0:
            starts.append(state)
        out = real_epoch(self, rows, epoch, *a)
        ends.append({f"e.{k}": v.clone() for k, v in self.run.encoder.state_dict().items()})
        ends[-1] |= {f"h.{k}": v.clone() for k, v in self.run.head.state_dict().items()}
        return out

    monkeypatch.setattr(tc._Trainer, "epoch", spy_epoch)
    result = tc.fit(tiny_bert_dir, texts, labels, tmp_path / "w", tc.FitParams.from_dict({"seed": 3}))
    [trial] = result.trials
    assert trial["hyperparameters"]["refit_rows"] == result.train_rows
    assert trial["hyperparameters"]["interpolation"] == 0.6
    assert len(starts) == 2  # the selection run, then the refit
    start, end = starts[1], ends[-1]
    _, encoder, head, _ = tc.load(tmp_path / "w")
    saved = {f"e.{k}": v for k, v in encoder.state_dict().items()}
    saved |= {f"h.{k}": v for k, v in load_file(str(tmp_path / "w" / tc.HEAD_FILE)).items()}
    moved = 0
    for k, v in saved.items():
        if not v.is_floating_point():
            continue
        assert torch.allclose(v, 0.4 * start[k] + 0.6 * end[k], atol=1e-6), k
        moved += int(not torch.allclose(end[k], start[k]))
    assert moved >= 2  # the head and the unfrozen layers trained, so the mix is neither end
    # The base encoder is the refit's start.
    _, base = tc.load_encoder(tiny_bert_dir)
    assert all(torch.equal(v, start[f"e.{k}"]) for k, v in base.state_dict().items())
