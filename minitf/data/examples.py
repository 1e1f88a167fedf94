"""Labelled text in, padded tensor batches out (files are read by minitf.data.text).

    read_examples(file)      CSV / TSV / JSONL → Examples (minitf.data.text, imported here)
    label_names(examples)    the classes, sorted ("0" < "1" < "10" numerically, else by name)
    encode(examples, tok)    tokenize once, up front → Encoded (token ids per example, label ids)
    batch_plan(...)          length-bucketed batches: a deterministic function of (epoch, seed)
    Encoded.collate(batch)   dynamic padding to the longest example of the batch

Length bucketing: shuffle, cut the order into pools of 50 batches, sort each pool by length,
cut it into batches and shuffle the batches. Each batch then holds examples of similar length,
so padding (computed and thrown away) is small, while the order stays random from epoch to
epoch. Because the plan depends only on (epoch, seed), a resumed run replays the same batches,
and data-parallel ranks can each take their share of one plan (plan[rank::world_size]).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

# The file-reading half lives in minitf.data.text; its names are kept here for the callers
# that use one namespace for reading, labels and batches (D.read_examples, D.FORMATS, ...).
from minitf.data.text import (  # noqa: F401
    FORMATS,
    LABEL_COLUMNS,
    PAIR_OF,
    TEXT_COLUMNS,
    BadRows,
    Examples,
    read_examples,
)
from minitf.errors import MinitfError

POOL_BATCHES = 50  # batches per length-sorted pool (see the module docstring)


# ---------------------------------------------------------------------------------------------
# Labels and splits
# ---------------------------------------------------------------------------------------------


def label_names(examples: Examples) -> list[str]:
    """The classes in id order: numerically if every label is an integer, else by name."""
    names = set(examples.labels) - {None}
    if all(_is_int(n) for n in names):  # "01" and "1" are one class (see label_ids), "1"
        return sorted({str(int(n)) for n in names}, key=int)
    return sorted(names)


def _is_int(text: str) -> bool:
    """An integer written in ASCII digits ("²" and "٣" pass str.isdigit, not this), short
    enough for int() (which refuses over 4,300 digits)."""
    return re.fullmatch(r"-?[0-9]{1,1000}", text) is not None


def label_ids(examples: Examples, names: Sequence[str], skip_bad_rows: bool = False
              ) -> tuple[Examples, list[int]]:
    """Map labels to ids. A label not among the training classes is a bad row."""
    index = {name: i for i, name in enumerate(names)}
    if all(_is_int(n) for n in names):  # "01" in a file means class "1"
        index.update({str(int(n)): i for i, n in enumerate(names)})
    bad = BadRows(examples.source, skip_bad_rows)
    keep, ids = [], []
    for i, label in enumerate(examples.labels):
        key = label
        if key not in index and key is not None and _is_int(key):
            key = str(int(key))
        if key not in index:
            bad.add(examples.lines[i] if examples.lines else i + 1,
                    f"label {label!r} was not seen in training (classes: {', '.join(names)})")
            continue
        keep.append(i)
        ids.append(index[key])
    skipped = bad.check()
    if skipped:
        examples = examples.subset(keep)
        examples.skipped += skipped
    return examples, ids


def label_values(examples: Examples, skip_bad_rows: bool = False
                 ) -> tuple[Examples, list[float]]:
    """Numeric labels (regression targets). A label that is not a finite number is a bad row."""
    bad = BadRows(examples.source, skip_bad_rows)
    keep, values = [], []
    for i, label in enumerate(examples.labels):
        value = _number(label)
        if value is None:
            bad.add(examples.lines[i] if examples.lines else i + 1,
                    f"label {label!r} is not a number (a regression target must be one)")
            continue
        keep.append(i)
        values.append(value)
    skipped = bad.check()
    if skipped:
        examples = examples.subset(keep)
        examples.skipped += skipped
    return examples, values


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def split(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """A seeded random split: (the rest, a held-out `fraction` of the rows)."""
    if not 0 < fraction < 1:
        raise MinitfError(f"a split fraction must be between 0 and 1, got {fraction}")
    n = len(examples)
    held = max(1, round(n * fraction))
    if held >= n:
        raise MinitfError(f"{examples.source}: {n} rows are too few to hold out {fraction:.0%}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return examples.subset(sorted(order[held:])), examples.subset(sorted(order[:held]))


# ---------------------------------------------------------------------------------------------
# Tokenized data and batches
# ---------------------------------------------------------------------------------------------


@dataclass
class Encoded:
    """Token ids of every example (unpadded), computed once, and the label ids."""

    input_ids: list[torch.Tensor]       # per example, (n_i,) int64, [CLS] ... [SEP] (... [SEP])
    token_type_ids: list[torch.Tensor]  # per example, (n_i,) 0 for the text, 1 for the pair
    labels: torch.Tensor                # (num_examples,) int64 class ids (-1: unlabelled),
                                        # or float32 regression targets
    pad_token_id: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> torch.Tensor:
        return torch.tensor([len(t) for t in self.input_ids], dtype=torch.int64)

    def subset(self, indices: Sequence[int]) -> Encoded:
        """The chosen examples, in the given order."""
        indices = list(indices)
        return Encoded([self.input_ids[i] for i in indices],
                       [self.token_type_ids[i] for i in indices], self.labels[indices],
                       self.pad_token_id)

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Pad the chosen examples to the longest of them: input_ids, attention_mask,
        token_type_ids (B, N) and labels (B,)."""
        n = max(len(self.input_ids[i]) for i in indices)
        ids = torch.full((len(indices), n), self.pad_token_id, dtype=torch.int64)
        types = torch.zeros((len(indices), n), dtype=torch.int64)
        mask = torch.zeros((len(indices), n), dtype=torch.int64)
        for row, i in enumerate(indices):
            k = len(self.input_ids[i])
            ids[row, :k] = self.input_ids[i]
            types[row, :k] = self.token_type_ids[i]
            mask[row, :k] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
                "labels": self.labels[list(indices)]}


def encode(examples: Examples, tokenizer: Any,
           labels: Sequence[int] | Sequence[float] | None = None, max_length: int = 128,
           chunk: int = 1024) -> Encoded:
    """Tokenize every example once (truncating to max_length) and drop the padding again."""
    ids, types = [], []
    for start in range(0, len(examples), chunk):
        texts = examples.texts[start:start + chunk]
        pairs = None if examples.pairs is None else examples.pairs[start:start + chunk]
        batch = tokenizer(texts, text_pairs=pairs, max_length=max_length, padding=True,
                          truncation=True)
        for row, n in enumerate(batch["attention_mask"].sum(1).tolist()):
            ids.append(batch["input_ids"][row, :n].clone())
            types.append(batch["token_type_ids"][row, :n].clone())
    labels = list(labels) if labels is not None else [-1] * len(ids)
    regression = any(isinstance(y, float) for y in labels)
    label_tensor = torch.tensor(labels, dtype=torch.float32 if regression else torch.int64)
    return Encoded(ids, types, label_tensor, int(getattr(tokenizer, "pad_token_id", 0)))


def batch_plan(lengths: torch.Tensor, batch_size: int, epoch: int = 0, seed: int = 0,
               shuffle: bool = True) -> list[list[int]]:
    """The batches of one epoch, as lists of example indices.

    shuffle=False (evaluation): examples sorted by length, longest first, cut in order.
    shuffle=True (training): length-bucketed random batches, a pure function of (epoch, seed).
    """
    n = len(lengths)
    if not shuffle:
        order = torch.argsort(lengths, descending=True, stable=True).tolist()
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator)
    pool = batch_size * POOL_BATCHES
    batches = []
    for start in range(0, n, pool):
        chunk = order[start:start + pool]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)].tolist()
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
