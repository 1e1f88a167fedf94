"""One reader of corpora (minitf.data.text.read_documents): `minitf tokenizer train --input F`
and `minitf pretrain --train F` get the same documents from the same CSV, TSV, JSONL or text
file (a table's text pair included), and the reader's rules hold for both."""

import json
from types import SimpleNamespace

import pytest

from minitf import cli
from minitf.data import mlm
from minitf.data.text import read_documents
from minitf.errors import MinitfError
from minitf.tokenizers import training

ROWS = [("the first review", "its pair", "pos"), ("  a second one  ", "another pair", "neg"),
        ("a third, with a comma", "a \"quoted\" pair", "pos")]
EXPECTED = ["the first review", "its pair", "a second one", "another pair",
            "a third, with a comma", "a \"quoted\" pair"]


def write_table(path):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"sentence1": a, "sentence2": b, "label": y}) + "\n"
                                for a, b, y in ROWS), encoding="utf-8")
    elif path.suffix == ".tsv":
        path.write_text("sentence1\tsentence2\tlabel\n" + "".join(
            f"{a}\t{b}\t{y}\n" for a, b, y in ROWS), encoding="utf-8")
    elif path.suffix == ".csv":
        quoted = [[f'"{x.replace(chr(34), chr(34) * 2)}"' for x in row] for row in ROWS]
        path.write_text("sentence1,sentence2,label\n" + "".join(
            ",".join(row) + "\n" for row in quoted), encoding="utf-8")
    else:
        path.write_text("\ufeff" + "".join(f"{x}\n\n" for x in EXPECTED), encoding="utf-8")
    return path


def tokenizer_documents(path, monkeypatch):
    """The documents `minitf tokenizer train --input path` trains on."""
    seen = {}

    def capture(documents, output, **settings):
        seen["documents"] = list(documents)
        raise KeyboardInterrupt  # stop before training: the documents are what we want

    monkeypatch.setattr("minitf.cli.tokenizer.train_sentencepiece", capture)
    assert cli.main(["tokenizer", "train", "--input", str(path), "--output",
                     str(path.parent / "tok")]) == 130
    return seen["documents"]


def pretrain_documents(path, monkeypatch):
    """The documents `minitf pretrain --train path` tokenizes (nothing held out)."""
    seen = {}

    def capture(texts, tokenizer):
        seen["documents"] = list(texts)
        raise KeyboardInterrupt

    monkeypatch.setattr(mlm, "tokenize_documents", capture)
    with pytest.raises(KeyboardInterrupt):
        mlm.load_corpus([str(path)], SimpleNamespace(cls_token_id=2, sep_token_id=3), policy=None,
                        max_length=8,
                        validation_fraction=0.0, say=lambda _: None)
    return seen["documents"]


@pytest.mark.parametrize("name", ["pairs.csv", "pairs.tsv", "pairs.jsonl", "lines.txt"])
def test_tokenizer_training_and_pretraining_read_the_same_documents(tmp_path, monkeypatch,
                                                                    name):
    path = write_table(tmp_path / name)
    assert tokenizer_documents(path, monkeypatch) == EXPECTED
    assert pretrain_documents(path, monkeypatch) == EXPECTED
    assert read_documents(path) == EXPECTED


def test_the_reader_calls_a_file_with_a_late_nul_byte_binary(tmp_path):
    """The whole file is checked (no 8 KiB / 64 KiB window that two readers disagreed on)."""
    path = tmp_path / "late.txt"
    path.write_bytes(b"text\n" * 20_000 + b"\0\n")
    with pytest.raises(MinitfError, match=r"late.txt: not a text file: looks binary"):
        read_documents(path)


def test_encoding_and_encoding_errors_are_both_honoured(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(MinitfError, match=r"latin.txt:2: bytes that are not valid utf-8"):
        read_documents(path)
    assert read_documents(path, encoding="latin-1") == ["ok", "café"]
    assert read_documents(path, encoding_errors="replace") == ["ok", "caf\ufffd"]


def test_sentencepiece_training_takes_documents_not_files(tmp_path):
    with pytest.raises(MinitfError, match="takes documents"):
        training.train_sentencepiece([tmp_path / "corpus.txt"], tmp_path / "tok")
    assert not (tmp_path / "tok").exists()
