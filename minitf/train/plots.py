"""The training curves of a run: metrics.jsonl → a PNG (needs matplotlib).

Left: training loss and validation loss. Right: the validation metrics that live on a [-1, 1]
scale (accuracy, macro-F1, Pearson r, ...). The x axis is the epoch — fractional for the
evaluations a recipe makes every N steps — so fine-tuning (one point per epoch) and
pre-training (one per N steps) share the plot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SKIPPED = ("n", "loss")


def plot_metrics(metrics_file: str | Path, png: str | Path) -> bool:
    """Draw `png`. Returns False (and draws nothing) when matplotlib is not installed or there
    is nothing to draw."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: pip install matplotlib)")
        return False
    records = [json.loads(line) for line in Path(metrics_file).read_text().splitlines() if line]
    points = [r for r in records if r.get("type") in ("epoch", "eval")]
    if not points:
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
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return True


def unit_scale_metrics(records: list[dict[str, Any]]) -> list[str]:
    """Scalar validation metrics present in every record, with every value in [-1, 1]."""
    if not records:
        return []
    names = [k for k, v in records[0]["validation"].items()
             if isinstance(v, float) and k not in SKIPPED]
    return [k for k in names if all(isinstance(r["validation"].get(k), float)
                                    and -1 <= r["validation"][k] <= 1 for r in records)]
