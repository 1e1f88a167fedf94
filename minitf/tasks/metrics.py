"""Classification metrics from predicted and true label ids: accuracy, per-class and macro F1,
the confusion matrix, and the majority-class baseline to compare them with.

    confusion[t][p] = number of examples of true class t predicted as class p
    precision_c = confusion[c][c] / Σ_t confusion[t][c]     (of those predicted c, how many are c)
    recall_c    = confusion[c][c] / Σ_p confusion[c][p]     (of those that are c, how many found)
    F1_c        = 2 · precision_c · recall_c / (precision_c + recall_c), 0 when both are 0
    macro-F1    = mean of F1_c over the classes present in the truth or the predictions (every
                  class counts the same, however rare; one absent from both is not counted,
                  as scikit-learn's f1_score(average="macro") does)

Regression (a model with one output): MSE, MAE and Pearson's r of predictions and targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def confusion_matrix(y_true: Sequence[int] | torch.Tensor, y_pred: Sequence[int] | torch.Tensor,
                     num_labels: int) -> list[list[int]]:
    """(num_labels × num_labels) counts, rows = true class, columns = predicted class."""
    t = torch.as_tensor(y_true, dtype=torch.int64).reshape(-1)
    p = torch.as_tensor(y_pred, dtype=torch.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.numel()} labels but y_pred has {p.numel()}")
    counts = torch.bincount(t * num_labels + p, minlength=num_labels * num_labels)
    return counts.reshape(num_labels, num_labels).tolist()


def classification_metrics(y_true: Sequence[int] | torch.Tensor,
                           y_pred: Sequence[int] | torch.Tensor,
                           labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix.

    `labels` are the class names in id order; the result is JSON-serialisable.
    """
    k = len(labels)
    cm = confusion_matrix(y_true, y_pred, k)
    n = sum(map(sum, cm))
    correct = sum(cm[c][c] for c in range(k))
    per_class, present = {}, []
    for c, name in enumerate(labels):
        predicted = sum(cm[t][c] for t in range(k))
        actual = sum(cm[c])
        precision = cm[c][c] / predicted if predicted else 0.0
        recall = cm[c][c] / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
        if predicted or actual:
            present.append(f1)
    return {
        "n": n,
        "accuracy": correct / n if n else 0.0,
        "macro_f1": sum(present) / len(present) if present else 0.0,
        "per_class": per_class,
        "confusion_matrix": cm,
        "labels": list(labels),
    }


def regression_metrics(y_true: Sequence[float] | torch.Tensor,
                       y_pred: Sequence[float] | torch.Tensor) -> dict[str, Any]:
    """n, mse, mae and Pearson's r (0 when either side is constant)."""
    t = torch.as_tensor(y_true, dtype=torch.float64).reshape(-1)
    p = torch.as_tensor(y_pred, dtype=torch.float64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.numel()} values but y_pred has {p.numel()}")
    if not t.numel():
        return {"n": 0, "mse": 0.0, "mae": 0.0, "pearson": 0.0}
    dt, dp = t - t.mean(), p - p.mean()
    norm = float(dt.norm() * dp.norm())
    return {"n": t.numel(), "mse": float(((p - t) ** 2).mean()), "mae": float((p - t).abs().mean()),
            "pearson": float((dt * dp).sum()) / norm if norm else 0.0}


def mean_baseline(train_values: Sequence[float], y_true: Sequence[float]) -> dict[str, Any]:
    """Regression metrics of always predicting the mean training value."""
    mean = float(torch.as_tensor(list(train_values), dtype=torch.float64).mean())
    out = regression_metrics(y_true, [mean] * len(y_true))
    out["predicted"] = mean
    return out


def majority_baseline(train_labels: Sequence[int], y_true: Sequence[int],
                      labels: Sequence[str]) -> dict[str, Any]:
    """Metrics of always predicting the most frequent training class (ties → lowest id)."""
    counts = torch.bincount(torch.as_tensor(list(train_labels), dtype=torch.int64),
                            minlength=len(labels))
    majority = int(counts.argmax())
    out = classification_metrics(y_true, [majority] * len(y_true), labels)
    out["predicted"] = labels[majority]
    return out


def format_report(metrics: dict[str, Any]) -> str:
    """A small text report: headline numbers, per-class table and the confusion matrix (or,
    for regression, the headline numbers)."""
    if "labels" not in metrics:
        return (f"n={metrics['n']}  mse={metrics['mse']:.4f}  mae={metrics['mae']:.4f}  "
                f"pearson={metrics['pearson']:.4f}")
    labels = metrics["labels"]
    width = max(8, *(len(x) for x in labels))
    lines = [f"n={metrics['n']}  accuracy={metrics['accuracy']:.4f}  "
             f"macro-F1={metrics['macro_f1']:.4f}",
             f"{'class':<{width}}  precision  recall     f1  support"]
    for name in labels:
        m = metrics["per_class"][name]
        lines.append(f"{name:<{width}}  {m['precision']:9.3f}  {m['recall']:6.3f}  "
                     f"{m['f1']:5.3f}  {m['support']:7d}")
    lines.append("confusion matrix (rows = true, columns = predicted):")
    lines.append(" " * (width + 2) + "".join(f"{name[:8]:>9}" for name in labels))
    for name, row in zip(labels, metrics["confusion_matrix"], strict=True):
        lines.append(f"{name:<{width}}  " + "".join(f"{x:>9d}" for x in row))
    return "\n".join(lines)
