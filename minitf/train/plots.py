"""The training curves of a fine-tuning run: metrics.jsonl → a PNG (needs matplotlib)."""

from __future__ import annotations

import json
from pathlib import Path


def plot_metrics(metrics_file: str | Path, png: str | Path) -> bool:
    """Train loss and validation loss (left), validation accuracy and macro-F1 (right), per
    epoch. Returns False (and draws nothing) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: pip install matplotlib)")
        return False
    records = [json.loads(line) for line in Path(metrics_file).read_text().splitlines() if line]
    epochs = [r for r in records if r.get("type") == "epoch"]
    if not epochs:
        return False
    x = [r["epoch"] for r in epochs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(x, [r["train_loss"] for r in epochs], "o-", label="train loss")
    validated = [r for r in epochs if "validation" in r]
    if validated:
        vx = [r["epoch"] for r in validated]
        left.plot(vx, [r["validation"]["loss"] for r in validated], "o-", label="validation loss")
        right.plot(vx, [r["validation"]["accuracy"] for r in validated], "o-", label="accuracy")
        right.plot(vx, [r["validation"]["macro_f1"] for r in validated], "o-", label="macro-F1")
    left.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    right.set(xlabel="epoch", ylabel="validation", title="validation metrics")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return True
