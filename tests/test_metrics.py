"""Metrics on inputs whose answers are known by hand."""

import pytest

from minitf.train.metrics import (
    classification_metrics,
    confusion_matrix,
    format_report,
    majority_baseline,
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
