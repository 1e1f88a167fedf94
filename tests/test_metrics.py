"""Metrics on inputs whose answers are known by hand."""

import random

import pytest

from minitf.tasks.metrics import (
    classification_metrics,
    confusion_matrix,
    format_report,
    majority_baseline,
    regression_metrics,
)


def test_confusion_matrix_rows_are_true_columns_predicted():
    assert confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3) == [
        [1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_metrics_by_hand():
    m = classification_metrics([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], ["a", "b", "c"])
    assert m["n"] == 6 and m["accuracy"] == pytest.approx(4 / 6)
    # a: precision 1/2, recall 1/2 → F1 1/2.  b: P 1/2, R 1 → 2/3.  c: P 1, R 2/3 → 4/5.
    assert m["per_class"]["a"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["b"]["f1"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["f1"] == pytest.approx(0.8)
    assert m["per_class"]["c"]["support"] == 3
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)


def test_never_predicted_class_has_zero_f1_not_nan():
    m = classification_metrics([0, 1, 1], [1, 1, 1], ["x", "y"])
    assert m["per_class"]["x"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["macro_f1"] == pytest.approx((0 + 0.8) / 2)


def test_perfect_predictions():
    m = classification_metrics([2, 0, 1], [2, 0, 1], ["a", "b", "c"])
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0


def test_majority_baseline_uses_training_counts():
    base = majority_baseline([0, 1, 1, 1], [0, 0, 1], ["neg", "pos"])
    assert base["predicted"] == "pos" and base["accuracy"] == pytest.approx(1 / 3)


def test_report_mentions_every_class():
    text = format_report(classification_metrics([0, 1], [0, 0], ["negative", "positive"]))
    assert "negative" in text and "positive" in text and "accuracy=0.5000" in text


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 2)


def test_macro_f1_matches_scikit_learn_on_random_small_cases():
    """Including classes absent from both truth and predictions (not counted, as sklearn)."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    absent_seen = 0
    for _ in range(200):
        k = rng.randint(2, 6)
        n = rng.randint(1, 12)
        used = rng.sample(range(k), rng.randint(1, k))  # some classes may never appear
        y_true = [rng.choice(used) for _ in range(n)]
        y_pred = [rng.choice(used) if rng.random() < 0.8 else rng.randrange(k) for _ in range(n)]
        absent_seen += len(set(range(k)) - set(y_true) - set(y_pred)) > 0
        mine = classification_metrics(y_true, y_pred, [f"c{i}" for i in range(k)])
        theirs = sklearn_metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)
        assert mine["macro_f1"] == pytest.approx(theirs, abs=1e-12), (y_true, y_pred, k)
        assert mine["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y_true, y_pred))
    assert absent_seen > 20  # the cases did exercise absent classes


def test_a_class_absent_from_truth_and_predictions_is_not_counted():
    m = classification_metrics([0, 0, 1], [0, 0, 1], ["a", "b", "c"])
    assert m["macro_f1"] == 1.0 and m["per_class"]["c"]["support"] == 0


def test_regression_metrics_by_hand():
    m = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert m["n"] == 3 and m["mse"] == pytest.approx(4 / 3) and m["mae"] == pytest.approx(2 / 3)
    # r = cov / (σ_t σ_p): t - t̄ = (-1, 0, 1), p - p̄ = (-5/3, -2/3, 7/3)
    assert m["pearson"] == pytest.approx(4 / (2 ** 0.5 * (78 / 9) ** 0.5))
    assert regression_metrics([1.0, 1.0], [0.0, 2.0])["pearson"] == 0.0  # constant truth
