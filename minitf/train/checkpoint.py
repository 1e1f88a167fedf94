"""Checkpoints that survive crashes: model directories and the training state, written atomically.

A checkpoint is a Hugging Face model directory — config.json (with id2label/label2id),
model.safetensors and the tokenizer files — that minitf and transformers load as it is. The
`last` checkpoint also holds `training_state.pt`: optimizer and scheduler state, the RNG
state, the data position (epoch, step) and the history so far, which is what `--resume` needs
to continue as if never stopped.

Every checkpoint is written into a temporary sibling directory and renamed into place
(minitf.io.atomic_directory), so an interrupted write leaves the previous one intact.
`Outputs` is the one place a training run writes from (under data parallelism: rank 0).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from minitf.errors import MinitfError
from minitf.io import atomic_directory, open_append, refuse_symlink, write_text

STATE_FILE = "training_state.pt"




def save_checkpoint(directory: str | Path, write: Callable[[Path], None],
                    state: dict[str, Any] | None = None) -> None:
    """`write(tmp)` the model's files (+ the training state) as one atomic directory."""
    with atomic_directory(directory) as tmp:
        write(tmp)
        if state is not None:
            torch.save(state, tmp / STATE_FILE)


def load_state(directory: str | Path) -> dict[str, Any]:
    """The training state saved with a `last` checkpoint (tensors and plain Python only)."""
    file = Path(directory) / STATE_FILE
    if not file.is_file():
        raise MinitfError(f"{directory}: no {STATE_FILE} to resume from; this directory was "
                          "not written by an interrupted minitf training run")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise MinitfError(f"{file}: cannot read the training state ({exc}); start again "
                          "without --resume") from None


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Outputs:
    """The one place that writes to --output (under data parallelism: rank 0 only)."""

    def __init__(self, directory: Path, enabled: bool = True):
        self.directory, self.enabled, self.lines = directory, enabled, 0
        self.metrics = directory / "metrics.jsonl"

    def truncate_metrics(self, lines: int) -> None:
        """Keep the first `lines` records (those the resumed checkpoint had seen)."""
        if not self.enabled:
            return
        refuse_symlink(self.metrics)
        kept = self.metrics.read_text().splitlines()[:lines] if self.metrics.exists() else []
        write_text(self.metrics, "".join(line + "\n" for line in kept))
        self.lines = len(kept)

    def log(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open_append(self.metrics) as f:  # never through a symlink
                f.write(json.dumps(record) + "\n")
            self.lines += 1

    def save_best(self, write: Callable[[Path], None]) -> None:
        if self.enabled:
            save_checkpoint(self.directory / "best", write)

    def save_last(self, write: Callable[[Path], None], state: dict[str, Any]) -> None:
        if self.enabled:
            save_checkpoint(self.directory / "last", write, state)

    def plot(self) -> None:
        if self.enabled:
            from minitf.train.plots import plot_metrics
            plot_metrics(self.metrics, self.directory / "training.png")
