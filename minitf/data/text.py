"""Reading text files: the one reader of CSV / TSV / JSONL tables and plain-text corpora.

    read_examples(file)      CSV / TSV / JSONL → Examples (texts, optional text pairs, labels),
                             every bad row reported as `file:line: what is wrong`
    read_documents(files)    the documents of a corpus: a line each of plain text, or the text
                             (and text-pair) column of a CSV / TSV / JSONL file

`minitf tokenizer train --input`, `minitf pretrain --train` and the Chinese demo all read their
corpora through read_documents, so the same file gives the same documents everywhere. Both
readers decode the same way (`encoding`, `encoding_errors`), call a file with a NUL byte binary
(unless the encoding is UTF-16/32), and report bad rows and undecodable lines by file and line.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minitf.errors import MinitfError

# Column names tried in order when none is given: GLUE's TSVs, then the obvious ones.
TEXT_COLUMNS = ("text", "sentence", "sentence1", "#1 String", "question1", "question")
PAIR_OF = {"sentence1": "sentence2", "#1 String": "#2 String", "question1": "question2",
           "question": "sentence", "text": "text_pair"}
LABEL_COLUMNS = ("label", "labels", "Quality", "sentiment", "gold_label", "class")
FORMATS = ("csv", "tsv", "jsonl")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".ndjson")
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


def _format_of(path: Path, default: str | None = None) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "json", "ndjson"):
        return "jsonl"
    if suffix in ("csv", "tsv"):
        return suffix
    if default is not None:
        return default
    raise MinitfError(f"{path}: cannot tell the format from the extension {path.suffix!r}; "
                      f"name the file .csv, .tsv or .jsonl, or pass --format {{csv,tsv,jsonl}}")


def _decode_lines(path: Path, encoding: str, errors: str, bad: BadRows) -> list[tuple[int, str]]:
    """(line number, text) per physical line; undecodable lines become bad rows."""
    data = path.read_bytes()
    if b"\0" in data and not encoding.lower().startswith(("utf-16", "utf16", "utf-32", "utf32")):
        raise MinitfError(f"{path}: not a text file: looks binary (NUL byte at offset "
                          f"{data.index(0)}); give a UTF-8 text, CSV, TSV or JSONL file (for "
                          "UTF-16 text, pass --encoding utf-16)")
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
            twice = sorted({h for h in header if header.count(h) > 1})
            if twice:
                raise MinitfError(f"{path}:{line}: the header names column(s) "
                                  f"{', '.join(map(repr, twice))} more than once; rename them "
                                  "so that each column has its own name")
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
            yield numbers[start], [], (
                f"a field longer than {csv.field_size_limit():,} characters, the most a field "
                "may hold; split the text, or check for a quote that is never closed"
                if "field larger than field limit" in str(exc) else
                f"broken quoting ({exc}); check the quotes on this line")
            i = start + 1


class DuplicateKey(ValueError):
    """A JSON object with the same key twice (json.loads would keep the last silently)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        raise DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return record


def _jsonl_records(lines: list[tuple[int, str]], bad: BadRows) -> list[tuple[int, dict]]:
    records = []
    for line, text in lines:
        if not text.strip():
            continue
        try:
            record = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            bad.add(line, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except DuplicateKey as exc:
            bad.add(line, f"the key {exc.args[0]!r} appears more than once in this object")
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
# Corpora: documents for tokenizer training and pre-training
# ---------------------------------------------------------------------------------------------


def read_documents(paths: str | os.PathLike | Sequence[str | os.PathLike],
                   text_column: str | None = None, *, encoding: str = "utf-8",
                   encoding_errors: str = "strict", skip_bad_rows: bool = False) -> list[str]:
    """The non-empty documents of every file, in order. A file named .csv/.tsv/.jsonl (or any
    file when `text_column` is given) is a table: each row gives its text, then its text pair
    if the table has one (`sentence1`/`sentence2`, ...). Any other file is plain text: one
    document per line, stripped."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise MinitfError("no input files; give at least one text, CSV, TSV or JSONL file")
    documents: list[str] = []
    for path in map(Path, paths):
        if path.suffix.lower() in TABLE_SUFFIXES or text_column is not None:
            found = _table_documents(path, text_column, encoding, encoding_errors,
                                     skip_bad_rows)
        else:
            found = _line_documents(path, encoding, encoding_errors, skip_bad_rows)
        if not found:
            raise MinitfError(f"{path}: no text in it (every line is empty); give a text file "
                              "with one document per line, or a CSV/TSV/JSONL file")
        documents += found
    return documents


def _table_documents(path: Path, text_column: str | None, encoding: str, encoding_errors: str,
                     skip_bad_rows: bool) -> list[str]:
    examples = read_examples(path, text_column, format=_format_of(path, default="csv"),
                             encoding=encoding, encoding_errors=encoding_errors,
                             skip_bad_rows=skip_bad_rows, require_labels=False)
    pairs = examples.pairs or [None] * len(examples)
    return [d.strip() for text, pair in zip(examples.texts, pairs, strict=True)
            for d in (text, pair) if d is not None and d.strip()]


def _line_documents(path: Path, encoding: str, encoding_errors: str,
                    skip_bad_rows: bool) -> list[str]:
    if not path.is_file():
        raise MinitfError(f"{path}: no such file")
    bad = BadRows(str(path), skip_bad_rows)
    lines = _decode_lines(path, encoding, encoding_errors, bad)
    bad.check()
    return [text.strip() for _, text in lines if text.strip()]
