"""Labelled text in, padded tensor batches out.

    read_examples(file)      CSV / TSV / JSONL → Examples (texts, optional text pairs, labels),
                             every bad row reported as `file:line: what is wrong`
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

import csv
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from minitf.errors import MinitfError

# Column names tried in order when none is given: GLUE's TSVs, then the obvious ones.
TEXT_COLUMNS = ("text", "sentence", "sentence1", "#1 String", "question1", "question")
PAIR_OF = {"sentence1": "sentence2", "#1 String": "#2 String", "question1": "question2",
           "question": "sentence", "text": "text_pair"}
LABEL_COLUMNS = ("label", "labels", "Quality", "sentiment", "gold_label", "class")
FORMATS = ("csv", "tsv", "jsonl")
POOL_BATCHES = 50  # batches per length-sorted pool (see the module docstring)
MAX_REPORTED = 5   # bad rows listed in one error message


@dataclass
class Examples:
    """Rows of one file: text (and text pair) with a label, and the line each came from."""

    texts: list[str]
    labels: list[str | None]
    pairs: list[str] | None = None
    lines: list[int] = field(default_factory=list)
    source: str = "<memory>"
    skipped: int = 0  # bad rows skipped while reading (with skip_bad_rows)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> Examples:
        pick = [int(i) for i in indices]
        return Examples([self.texts[i] for i in pick], [self.labels[i] for i in pick],
                        None if self.pairs is None else [self.pairs[i] for i in pick],
                        [self.lines[i] for i in pick] if self.lines else [],
                        self.source, self.skipped)


class BadRows:
    """Collects `file:line: problem` messages; raises them together unless skipping."""

    def __init__(self, source: str, skip: bool):
        self.source, self.skip, self.problems = source, skip, []

    def add(self, line: int, problem: str) -> None:
        self.problems.append(f"{self.source}:{line}: {problem}")

    def check(self) -> int:
        if self.problems and not self.skip:
            shown = "\n".join(self.problems[:MAX_REPORTED])
            more = len(self.problems) - MAX_REPORTED
            raise MinitfError(
                f"{shown}\n" + (f"... and {more} more bad rows\n" if more > 0 else "")
                + "Fix these rows, or pass --skip-bad-rows to skip (and count) them.")
        return len(self.problems)


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def read_examples(path: str | Path, text_column: str | None = None,
                  pair_column: str | None = None, label_column: str | None = None, *,
                  format: str | None = None, encoding: str = "utf-8",
                  encoding_errors: str = "strict", skip_bad_rows: bool = False,
                  require_labels: bool = True) -> Examples:
    """Read a CSV, TSV or JSONL file of labelled texts.

    The format comes from the extension unless given. TSV is read with quoting off, as GLUE's
    files need (their texts contain unbalanced quotes); CSV uses standard double-quote quoting.
    Columns default to the first of TEXT_COLUMNS / LABEL_COLUMNS present; a text pair is used
    when `pair_column` is given or the text column has a known partner (sentence1/sentence2,
    #1 String/#2 String). Rows with a missing column, empty text or label, undecodable bytes or
    broken quoting raise one MinitfError naming file and line, or are skipped and counted.
    """
    path = Path(path)
    if not path.is_file():
        raise MinitfError(f"{path}: no such file")
    format = format or _format_of(path)
    bad = BadRows(str(path), skip_bad_rows)
    lines = _decode_lines(path, encoding, encoding_errors, bad)
    if format == "jsonl":
        records = _jsonl_records(lines, bad)
        columns = None
        if not records:
            _refuse_unreadable(path, bad)
    else:
        records, columns = _delimited_records(lines, "\t" if format == "tsv" else ",", format,
                                              bad, path)
    text_col, pair_col, label_col = _choose_columns(path, columns, records, text_column,
                                                    pair_column, label_column, require_labels)
    texts, pairs, labels, line_numbers = [], [], [], []
    for line, record in records:
        row = _row(record, text_col, pair_col, label_col, require_labels)
        if isinstance(row, str):
            bad.add(line, row)
            continue
        texts.append(row[0])
        pairs.append(row[1])
        labels.append(row[2])
        line_numbers.append(line)
    skipped = bad.check()
    if not texts:
        raise MinitfError(f"{path}: no usable rows" + (f" ({skipped} skipped)" if skipped else ""))
    return Examples(texts, labels, pairs if pair_col else None, line_numbers, str(path), skipped)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "json", "ndjson"):
        return "jsonl"
    if suffix in ("csv", "tsv"):
        return suffix
    raise MinitfError(f"{path}: cannot tell the format from the extension {path.suffix!r}; "
                      f"name the file .csv, .tsv or .jsonl, or pass --format {{csv,tsv,jsonl}}")


def _decode_lines(path: Path, encoding: str, errors: str, bad: BadRows) -> list[tuple[int, str]]:
    """(line number, text) per physical line; undecodable lines become bad rows."""
    data = path.read_bytes()
    if b"\0" in data and not encoding.lower().startswith(("utf-16", "utf16", "utf-32", "utf32")):
        raise MinitfError(f"{path}: not a text file: looks binary (NUL byte at offset "
                          f"{data.index(0)}); give a CSV, TSV or JSONL file (for UTF-16 text, "
                          "pass --encoding utf-16)")
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # a leading BOM (GLUE's MRPC has one) is not part of the header
    try:
        text = data.decode(encoding, errors)
    except LookupError:
        raise MinitfError(f"unknown encoding {encoding!r}") from None
    except UnicodeDecodeError:
        text = None
    if text is not None:
        return [(i + 1, s.removesuffix("\r")) for i, s in enumerate(text.split("\n"))]
    out = []
    for i, raw in enumerate(data.split(b"\n")):
        try:
            out.append((i + 1, raw.decode(encoding if i == 0 else encoding.removesuffix("-sig"))
                        .removesuffix("\r")))
        except UnicodeDecodeError as exc:
            bad.add(i + 1, f"bytes that are not valid {encoding.removesuffix('-sig')} (byte "
                    f"0x{raw[exc.start]:02x} at column {exc.start + 1}); pass --encoding "
                    "with the file's real encoding, or --encoding-errors replace")
    return out


def _delimited_records(lines: list[tuple[int, str]], delimiter: str, format: str,
                       bad: BadRows, path: Path) -> tuple[list[tuple[int, dict]], list[str]]:
    rows = _csv_rows(lines, delimiter, csv.QUOTE_NONE if format == "tsv" else csv.QUOTE_MINIMAL)
    header = None
    records = []
    for line, fields, problem in rows:
        if problem is not None:
            bad.add(line, problem)
        elif header is None:
            header = [h.strip() for h in fields]
        elif len(fields) != len(header):
            hint = (" (an unquoted comma in the text? quote such fields)"
                    if format == "csv" and len(fields) > len(header) else "")
            bad.add(line, f"expected {len(header)} fields ({', '.join(header)}), found "
                    f"{len(fields)}{hint}")
        else:
            records.append((line, dict(zip(header, fields, strict=True))))
    if header is None:
        _refuse_unreadable(path, bad)
        raise MinitfError(f"{path}: empty file; expected a header row, then one row per example")
    return records, header


def _refuse_unreadable(path: Path, bad: BadRows) -> None:
    """No line could be read: say why (bad bytes, quoting, JSON), not "empty" or "no column"."""
    if bad.problems:
        bad.check()  # raises, unless skipping bad rows
        raise MinitfError(f"{path}: no usable rows: all {len(bad.problems)} non-blank lines "
                          f"are bad; the first: {bad.problems[0]}")


def _csv_rows(lines: list[tuple[int, str]], delimiter: str, quoting: int
              ) -> Iterator[tuple[int, list[str], str | None]]:
    """(first line, fields, problem) per record. A record with broken quoting is reported at
    the line it starts on, and parsing restarts on the next line (so one stray quote cannot
    swallow the rest of the file)."""
    texts = [s + "\n" for _, s in lines]
    numbers = [n for n, _ in lines]
    i = 0
    while i < len(texts):
        reader = csv.reader(texts[i:], delimiter=delimiter, quoting=quoting, strict=True)
        consumed = 0
        try:
            for fields in reader:
                start, consumed = i + consumed, reader.line_num
                if fields:  # blank lines carry no row
                    yield numbers[start], fields, None
            return
        except csv.Error as exc:
            start = i + consumed
            yield numbers[start], [], f"broken quoting ({exc}); check the quotes on this line"
            i = start + 1


def _jsonl_records(lines: list[tuple[int, str]], bad: BadRows) -> list[tuple[int, dict]]:
    records = []
    for line, text in lines:
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            bad.add(line, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except (ValueError, RecursionError) as exc:  # integers too long, nesting too deep
            bad.add(line, f"not valid JSON ({str(exc)[:100]})")
            continue
        if not isinstance(record, dict):
            bad.add(line, "expected a JSON object per line, like {\"text\": ..., \"label\": ...}")
            continue
        records.append((line, record))
    return records


def _choose_columns(path: Path, columns: list[str] | None, records: list[tuple[int, dict]],
                    text_column: str | None, pair_column: str | None, label_column: str | None,
                    require_labels: bool) -> tuple[str, str | None, str | None]:
    if columns is None:  # JSONL: the keys of the first records
        columns = list(dict.fromkeys(k for _, r in records[:100] for k in r))
    available = ", ".join(repr(c) for c in columns)
    text = text_column or next((c for c in TEXT_COLUMNS if c in columns), None)
    if text is None or text not in columns:
        raise MinitfError(f"{path}: no text column {text_column or ''!r}; the columns are "
                          f"{available}; choose one with --text-column")
    pair = pair_column or (PAIR_OF.get(text) if PAIR_OF.get(text) in columns else None)
    if pair is not None and pair not in columns:
        raise MinitfError(f"{path}: no column {pair!r} for the text pair; the columns are "
                          f"{available}")
    label = label_column or next((c for c in LABEL_COLUMNS if c in columns), None)
    if label is not None and label not in columns:
        label = None if not label_column else label
        if label_column:
            raise MinitfError(f"{path}: no label column {label_column!r}; the columns are "
                              f"{available}")
    if label is None and require_labels:
        raise MinitfError(f"{path}: no label column (tried {', '.join(LABEL_COLUMNS)}); the "
                          f"columns are {available}; choose one with --label-column")
    return text, pair, label


def _row(record: dict[str, Any], text_col: str, pair_col: str | None, label_col: str | None,
         require_labels: bool) -> tuple[str, str | None, str | None] | str:
    """(text, pair, label) of one record, or a string saying what is wrong with it."""
    values = []
    for col in (text_col, pair_col):
        if col is None:
            values.append(None)
            continue
        if col not in record:
            return f"missing column {col!r}"
        value = record[col]
        if not isinstance(value, str):
            return f"{col!r} must be a string, got {json.dumps(value)[:40]}"
        if not value.strip():
            return f"empty text in column {col!r}"
        values.append(value)
    label = None
    if label_col is not None and (require_labels or label_col in record):
        if label_col not in record:
            return f"missing label column {label_col!r}"
        raw = record[label_col]
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            return f"label must be a string or an integer, got {json.dumps(raw)[:40]}"
        label = str(raw).strip()
        if not label:
            return f"empty label in column {label_col!r}"
    return values[0], values[1], label


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
