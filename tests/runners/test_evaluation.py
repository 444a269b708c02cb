from __future__ import annotations

import numpy as np
import pytest

from runners.evaluation import classification_report


def test_metrics_on_a_hand_checked_example() -> None:
    y = [0, 0, 1, 1, 2, 2]
    probs = np.array(
        [
            [0.95, 0.03, 0.02],  # 0 → 0, confident
            [0.20, 0.70, 0.10],  # 0 → 1
            [0.05, 0.92, 0.03],  # 1 → 1, confident
            [0.10, 0.80, 0.10],  # 1 → 1
            [0.01, 0.01, 0.98],  # 2 → 2, confident
            [0.50, 0.10, 0.40],  # 2 → 0
        ]
    )
    r = classification_report(y, probs, ["a", "b", "c"], threshold=0.9)
    assert r.accuracy == pytest.approx(4 / 6)
    # precision: a 1/2, b 2/3, c 1/1
    assert r.macro_precision == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert r.macro_recall == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert r.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert r.coverage == pytest.approx(3 / 6)
    assert r.precision_at_coverage == pytest.approx(1.0)
    assert [c["support"] for c in r.per_class] == [2, 2, 2]


def test_nothing_answered_gives_zero_coverage() -> None:
    r = classification_report([0, 1], np.array([[0.6, 0.4], [0.45, 0.55]]), ["x", "y"], threshold=0.99)
    assert r.coverage == 0.0
    assert r.precision_at_coverage == 0.0
