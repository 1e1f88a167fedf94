"""The training curves of a run: metrics.jsonl → a PNG (needs matplotlib).

plot_metrics (any recipe): left, training and validation loss; right, the validation metrics
on a [-1, 1] scale (accuracy, macro-F1, Pearson r, ...); x is the epoch, fractional for
evaluations every N steps. plot_pretraining: the masked-LM curves by step, beside the accuracy
of always predicting the most frequent token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from minitf.io import atomic_file

SKIPPED = ("n", "loss")


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: pip install matplotlib)")
        return None
    return plt


def _records(metrics_file: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(metrics_file).read_text().splitlines() if line]


def _save(plt: Any, fig: Any, axes: tuple[Any, ...], png: str | Path) -> bool:
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    with atomic_file(png) as tmp:  # whole or not at all, never through a symlink
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return True


def plot_metrics(metrics_file: str | Path, png: str | Path) -> bool:
    """Draw `png`. Returns False (and draws nothing) when matplotlib is not installed or there
    is nothing to draw."""
    plt = _pyplot()
    points = [r for r in _records(metrics_file) if r.get("type") in ("epoch", "eval")]
    if plt is None or not points:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot([r["epoch"] for r in points], [r["train_loss"] for r in points], "o-",
              label="train loss")
    validated = [r for r in points if "validation" in r]
    x = [r["epoch"] for r in validated]
    if validated:
        left.plot(x, [r["validation"]["loss"] for r in validated], "o-", label="validation loss")
    for name in unit_scale_metrics(validated):
        right.plot(x, [r["validation"][name] for r in validated], "o-", label=name)
    left.set(xlabel="epoch", ylabel="loss", title="loss")
    right.set(xlabel="epoch", ylabel="validation", title="validation metrics")
    return _save(plt, fig, (left, right), png)


def plot_pretraining(metrics_file: str | Path, png: str | Path) -> bool:
    """Training and held-out masked loss (left) and masked-token accuracy (right) by step,
    beside the accuracy of always predicting the most frequent token."""
    plt = _pyplot()
    evals = [r for r in _records(metrics_file) if r.get("type") == "eval" and r.get("step")]
    if plt is None or not evals:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    steps = [r["step"] for r in evals]
    left.plot(steps, [r["train_loss"] for r in evals], "o-", label="training (masked) loss")
    validated = [r for r in evals if "validation" in r]
    if validated:
        vs = [r["step"] for r in validated]
        left.plot(vs, [r["validation"]["loss"] for r in validated], "o-", label="held-out loss")
        right.plot(vs, [r["validation"]["accuracy"] for r in validated], "o-",
                   label="masked-token accuracy")
        right.plot(vs, [r["validation"]["most_frequent_token_accuracy"] for r in validated],
                   "--", label="always the most frequent token")
    left.set(xlabel="step", ylabel="cross-entropy", title="masked-LM loss")
    right.set(xlabel="step", ylabel="held-out", title="masked-token accuracy")
    return _save(plt, fig, (left, right), png)


def unit_scale_metrics(records: list[dict[str, Any]]) -> list[str]:
    """Scalar validation metrics present in every record, with every value in [-1, 1]."""
    if not records:
        return []
    names = [k for k, v in records[0]["validation"].items()
             if isinstance(v, float) and k not in SKIPPED]
    return [k for k in names if all(isinstance(r["validation"].get(k), float)
                                    and -1 <= r["validation"][k] <= 1 for r in records)]
