"""The peers of `make demo-seg` and benchmarks/tokens.py (minitf/tasks/segmenters.py): each
learns from the training words, never changes the text, and is scored by SIGHAN's rules."""

from __future__ import annotations

import pytest

from minitf.data import tokens as T
from minitf.tasks import segmenters as S


def sentences(*lines: str) -> T.Sentences:
    items = [T.Sentence(list(line.replace(" ", "")), T.words_to_tags(line.split()), n + 1)
             for n, line in enumerate(lines)]
    return T.Sentences(items, "words", "<test>", list(T.SEGMENT_LABELS))


TRAIN = sentences("中国 人民 解放军", "人民 日报", "北京 欢迎 你", "中国 北京")


def test_forward_maximum_matching_takes_the_longest_training_word():
    segment = S.fmm_segmenter(TRAIN)
    assert segment(["中国人民日报", "北京欢迎我们"]) == [["中国", "人民", "日报"],
                                                      ["北京", "欢迎", "我", "们"]]
    assert S.training_words(TRAIN)["中国"] == 2


def test_scores_follow_sighan():
    test = sentences("中国 人民 日报 欢迎 我们")
    lexicon = set(S.training_words(TRAIN))
    row = S.score_segmenter("fmm", S.fmm_segmenter(TRAIN), test, lexicon, train_seconds=1.5)
    # 4 of 5 gold words found (我们 split in two); 4 of 6 predicted words right
    assert row["recall"] == pytest.approx(4 / 5) and row["precision"] == pytest.approx(4 / 6)
    assert row["oov_recall"] == 0.0 and row["iv_recall"] == 1.0   # 我们 is the one OOV word
    assert row["train_seconds"] == 1.5 and row["chars_per_s"] > 0


def test_a_segmenter_that_changes_the_text_is_caught():
    with pytest.raises(AssertionError, match="changed the text"):
        S.score_segmenter("bad", lambda texts: [[t[:-1]] for t in texts],
                          sentences("中国 人民"), set())


def test_jieba_with_the_training_words(tmp_path):
    pytest.importorskip("jieba")
    segment = S.jieba_segmenter(TRAIN, tmp_path, hmm=False)
    assert segment(["中国人民日报"]) == [["中国", "人民", "日报"]]


def test_snownlp_retrained_keeps_the_text(tmp_path):
    pytest.importorskip("snownlp")
    segment, seconds = S.snownlp_segmenter(TRAIN, tmp_path)
    words = segment(["中国人民欢迎你"])[0]
    assert "".join(words) == "中国人民欢迎你" and seconds >= 0
    assert (tmp_path / "snownlp-train.txt").read_text(encoding="utf-8").startswith("中/b 国/e")
