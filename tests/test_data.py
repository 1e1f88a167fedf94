"""Reading labelled files: formats, column defaults, every kind of bad row, batches."""

import json
from pathlib import Path

import pytest
import torch
from ft_fakes import FakeTokenizer, toy_rows

from minitf.data import examples as D
from minitf.errors import MinitfError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_quotes_and_string_labels(tmp_path):
    f = write(tmp_path / "a.csv", 'text,label\n"good, really",pos\nbad,neg\n"multi\nline",pos\n')
    ex = D.read_examples(f)
    assert ex.texts == ["good, really", "bad", "multi\nline"]
    assert ex.labels == ["pos", "neg", "pos"] and ex.lines == [2, 3, 4]
    assert D.label_names(ex) == ["neg", "pos"]


def test_tsv_glue_style_bom_quotes_and_pairs(tmp_path):
    f = write(tmp_path / "m.tsv", b"\xef\xbb\xbfQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
              b'1\t1\t2\tHe said " hello\tHe spoke\n0\t3\t4\tA " b\tC d\n')
    ex = D.read_examples(f)
    assert ex.texts == ['He said " hello', 'A " b'] and ex.pairs == ["He spoke", "C d"]
    assert ex.labels == ["1", "0"]


def test_jsonl_integer_labels_sort_numerically(tmp_path):
    rows = [{"text": f"t{i}", "label": i} for i in (10, 2, 1, 2)]
    f = write(tmp_path / "a.jsonl", "".join(json.dumps(r) + "\n" for r in rows) + "\n")
    ex = D.read_examples(f)
    assert D.label_names(ex) == ["1", "2", "10"]
    _, ids = D.label_ids(ex, D.label_names(ex))
    assert ids == [2, 1, 0, 1]


def test_explicit_columns_and_missing_column(tmp_path):
    f = write(tmp_path / "a.csv", "review,stars\nnice,5\n")
    with pytest.raises(MinitfError, match="no text column.*'review', 'stars'"):
        D.read_examples(f)
    ex = D.read_examples(f, text_column="review", label_column="stars")
    assert ex.texts == ["nice"] and ex.labels == ["5"]
    with pytest.raises(MinitfError, match="no label column 'y'"):
        D.read_examples(f, text_column="review", label_column="y")


@pytest.mark.parametrize("content, line, message", [
    ("text,label\nok,a\n,b\n", 3, "empty text"),
    ("text,label\nok,a\nfine,\n", 3, "empty label"),
    ("text,label\nok,a\nx,y,z\n", 3, "expected 2 fields"),
    ('text,label\nok,a\n"broken,b\nfine,a\n', 3, "broken quoting"),
    ('text,label\nok,a\n"closed"x,b\n', 3, "broken quoting"),
])
def test_bad_csv_rows_name_file_and_line(tmp_path, content, line, message):
    f = write(tmp_path / "bad.csv", content)
    with pytest.raises(MinitfError, match=f"bad.csv:{line}: {message}"):
        D.read_examples(f)
    ex = D.read_examples(f, skip_bad_rows=True)
    assert ex.skipped == 1 and ex.texts[0] == "ok"


def test_broken_quote_does_not_swallow_the_rest_when_skipping(tmp_path):
    f = write(tmp_path / "q.csv", 'text,label\n"open,a\nb,c\nd,e\n')
    ex = D.read_examples(f, skip_bad_rows=True)
    assert ex.texts == ["b", "d"] and ex.skipped == 1


def test_bad_jsonl_rows(tmp_path):
    f = write(tmp_path / "b.jsonl", '{"text": "a", "label": 1}\n{"text": "b"\n[1]\n'
              '{"text": 3, "label": 1}\n{"label": 1}\n{"text": "c", "label": true}\n')
    with pytest.raises(MinitfError) as err:
        D.read_examples(f)
    text = str(err.value)
    for line, what in ((2, "not valid JSON"), (3, "expected a JSON object"),
                       (4, "'text' must be a string"), (5, "missing column 'text'"),
                       (6, "label must be")):
        assert f"b.jsonl:{line}: {what}" in text
    assert "--skip-bad-rows" in text
    assert D.read_examples(f, skip_bad_rows=True).skipped == 5


def test_undecodable_bytes(tmp_path):
    f = write(tmp_path / "e.csv", b"text,label\nok,a\ncaf\xe9,b\n")
    with pytest.raises(MinitfError, match=r"e.csv:3: bytes that are not valid utf-8 \(byte 0xe9"):
        D.read_examples(f)
    assert D.read_examples(f, skip_bad_rows=True).texts == ["ok"]
    assert D.read_examples(f, encoding_errors="replace").texts == ["ok", "caf\ufffd"]
    assert D.read_examples(f, encoding="latin-1").texts == ["ok", "café"]


def test_label_unseen_in_training_is_a_bad_row(tmp_path):
    f = write(tmp_path / "v.csv", "text,label\na,pos\nb,maybe\n")
    with pytest.raises(MinitfError, match="v.csv:3: label 'maybe' was not seen in training"):
        D.label_ids(D.read_examples(f), ["neg", "pos"])
    ex, ids = D.label_ids(D.read_examples(f), ["neg", "pos"], skip_bad_rows=True)
    assert ex.texts == ["a"] and ids == [1] and ex.skipped == 1


@pytest.mark.parametrize("odd", ["²", "٣", "1²", "-²"])
def test_digit_like_labels_are_names_not_a_traceback(tmp_path, odd):
    """str.isdigit() is true for "²" but int("²") fails: such labels are plain names, and a
    training label set of integers meeting one in validation is a bad row at file:line."""
    f = write(tmp_path / "t.csv", f"text,label\na,{odd}\nb,1\nc,2\n")
    ex = D.read_examples(f)
    names = D.label_names(ex)
    assert set(names) == {odd, "1", "2"}
    _, ids = D.label_ids(ex, names)
    assert [names[i] for i in ids] == [odd, "1", "2"]
    v = write(tmp_path / "v.csv", f"text,label\na,1\nb,{odd}\n")
    with pytest.raises(MinitfError, match=f"v.csv:3: label '{odd}' was not seen in training"):
        D.label_ids(D.read_examples(v), ["1", "2"])


def test_regression_labels_are_finite_numbers(tmp_path):
    f = write(tmp_path / "r.csv", "text,score\na,0.5\nb,-2\nc,1e1\nd,²\ne,nan\n")
    ex = D.read_examples(f, label_column="score")
    with pytest.raises(MinitfError, match=r"r.csv:5: label '²' is not a number(.|\n)*"
                                          r"r.csv:6: label 'nan'"):
        D.label_values(ex)
    kept, values = D.label_values(ex, skip_bad_rows=True)
    assert values == [0.5, -2.0, 10.0] and kept.skipped == 2
    encoded = D.encode(kept, FakeTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]"]), values)
    assert encoded.labels.dtype == torch.float32


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(MinitfError, match="no such file"):
        D.read_examples(tmp_path / "nope.csv")
    with pytest.raises(MinitfError, match="--format"):
        D.read_examples(write(tmp_path / "a.txt", "text,label\n"))


def test_split_is_seeded_and_disjoint(tmp_path):
    ex = D.Examples([str(i) for i in range(100)], ["a"] * 100, lines=list(range(100)))
    rest, held = D.split(ex, 0.2, seed=3)
    assert len(held) == 20 and len(rest) == 80
    assert set(rest.texts).isdisjoint(held.texts)
    assert D.split(ex, 0.2, seed=3)[1].texts == held.texts != D.split(ex, 0.2, seed=4)[1].texts


def test_encode_pairs_and_collate(tmp_path):
    tok = FakeTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", "c"])
    ex = D.Examples(["a b", "c"], ["x", "y"], pairs=["c", "a b c"])
    enc = D.encode(ex, tok, [0, 1], max_length=16)
    assert enc.input_ids[0].tolist() == [2, 4, 5, 3, 6, 3]
    assert enc.token_type_ids[0].tolist() == [0, 0, 0, 0, 1, 1]
    batch = enc.collate([1, 0])
    assert batch["input_ids"].shape == (2, 7)
    assert batch["attention_mask"].tolist() == [[1] * 7, [1] * 6 + [0]]
    assert batch["labels"].tolist() == [1, 0]


def test_batch_plan_is_a_deterministic_bucketed_permutation():
    lengths = torch.randint(3, 60, (1000,), generator=torch.Generator().manual_seed(0))
    plan = D.batch_plan(lengths, 16, epoch=1, seed=5)
    assert sorted(i for b in plan for i in b) == list(range(1000))
    assert plan == D.batch_plan(lengths, 16, epoch=1, seed=5)
    assert plan != D.batch_plan(lengths, 16, epoch=2, seed=5)
    padded = sum(len(b) * int(lengths[b].max()) for b in plan)
    random = [list(range(i, min(i + 16, 1000))) for i in range(0, 1000, 16)]
    padded_random = sum(len(b) * int(lengths[b].max()) for b in random)
    assert padded < 0.7 * padded_random  # far less padding than unsorted batches


def test_toy_rows_round_trip(tmp_path):
    rows = toy_rows(20)
    f = write(tmp_path / "t.csv", "text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    assert D.read_examples(f).texts == [t for t, _ in rows]


@pytest.mark.skipif(not (SHARED / "mrpc" / "train.tsv").is_file(), reason="needs shared/data")
def test_real_glue_files():
    mrpc = D.read_examples(SHARED / "mrpc" / "train.tsv")
    assert len(mrpc) == 3668 and mrpc.pairs is not None and D.label_names(mrpc) == ["0", "1"]
    sst2 = D.read_examples(SHARED / "sst2" / "train.tsv")
    assert len(sst2) == 67349 and sst2.pairs is None
