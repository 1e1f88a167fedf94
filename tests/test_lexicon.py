"""The lexicon (minitf/data/lexicon.py) and lexicon-aware decoding (minitf/tasks/decode.py,
lexicon_viterbi) against brute force over every segmentation; what `finetune --task segment`
writes (lexicon.txt, the weight picked on validation) and what `minitf segment --lexicon` does
with a user's dictionary."""

import itertools
import json

import pytest
import torch
from test_decode import JOINT, SEGMENT, brute_force
from token_fakes import make_corpus, train

from minitf.cli import main
from minitf.data import tokens as T
from minitf.data.lexicon import Lexicon, read_lexicon, write_lexicon
from minitf.errors import MinitfError
from minitf.recipes.finetune import FinetuneConfig, finetune
from minitf.tasks.decode import allowed_transitions, lexicon_viterbi, viterbi, word_kinds
from minitf.tasks.tokens import DEFAULT_LEXICON_WEIGHT, TokenTagger

pytestmark = pytest.mark.usefixtures("one_thread")


def segmentations(n):
    """Every way to cut n positions into words: lists of (start, end)."""
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0, *(i + 1 for i, cut in enumerate(cuts) if cut), n]
        yield list(itertools.pairwise(bounds))


def brute_force_words(logits, labels, text, lexicon, weight):
    """The best labels over every segmentation × tag of each word, by the definition: labels'
    log-probabilities + weight per multi-character lexicon word."""
    logp = torch.log_softmax(logits.double(), -1)
    tags = sorted({x.partition("-")[2] for x in labels}) if "-" in labels[0] else [None]
    best, best_labels = float("-inf"), None
    for words in segmentations(len(text)):
        for word_tags in itertools.product(tags, repeat=len(words)):
            spelled = T.words_to_tags([text[a:b] for a, b in words],
                                      None if tags == [None] else list(word_tags))
            if any(x not in labels for x in spelled):
                continue
            total = float(sum(logp[t, labels.index(x)] for t, x in enumerate(spelled)))
            total += weight * sum(b - a > 1 and text[a:b] in lexicon
                                  and (tag is None or tag in lexicon.tags.get(text[a:b], {tag}))
                                  for (a, b), tag in zip(words, word_tags, strict=True))
            if total > best:
                best, best_labels = total, spelled
    return best_labels


@pytest.mark.parametrize("labels", [SEGMENT, JOINT, ["B-n", "I-n", "B-p"]])
def test_lexicon_viterbi_is_the_best_segmentation_with_the_bonus(labels):
    generator = torch.Generator().manual_seed(len(labels))
    tagged = Lexicon.from_counts({"ab": 3, "abc": 1, "bcd": 2, "de": 1, "a": 5},
                                 {"ab": ["v"], "bcd": ["n", "v"], "de": ["p"]})
    lexicon = tagged if labels != SEGMENT else Lexicon(tagged.counts)
    kinds = word_kinds(labels)
    for text in ("abcde", "a", "bcdab", "eabcd"):
        logits = torch.randn(len(text), len(labels), generator=generator) * 2
        for weight in (0.0, 1.5, 20.0):
            ids = lexicon_viterbi(logits, list(text), kinds, lexicon, weight)
            got = [labels[i] for i in ids]
            assert got == brute_force_words(logits, labels, text, lexicon, weight), (text, weight)
        # weight 0: exactly the constrained Viterbi of the labels alone
        assert lexicon_viterbi(logits, list(text), kinds, lexicon, 0.0) == brute_force(logits,
                                                                                      labels)
        assert viterbi([logits], allowed_transitions(labels))[0] == brute_force(logits, labels)


def test_a_large_weight_keeps_every_lexicon_word_it_can():
    logits = torch.tensor([[0.0, 0.0, 0.0, 9.0]]).repeat(6, 1)   # the model: all single chars
    got = lexicon_viterbi(logits, list("xabcdx"), word_kinds(SEGMENT),
                          Lexicon.from_counts({"abcd": 1}), 100.0)
    assert [SEGMENT[i] for i in got] == ["S", "B", "M", "M", "E", "S"]


def test_labels_without_words_have_no_kinds():
    assert word_kinds(["O", "B-PER", "I-PER"]) is None
    assert word_kinds(["B-PER", "I-PER", "E-PER", "S-PER", "O"]) is None
    assert word_kinds(SEGMENT).tags == [None]
    assert word_kinds(JOINT).tags == ["n", "v"]


def test_a_union_keeps_tags_only_where_both_sides_name_them():
    mine = Lexicon.from_counts({"发展": 3, "人民": 2, "中国": 1}, {"发展": ["v"], "人民": ["n"]})
    theirs = Lexicon.from_counts({"发展": 1, "人民": 1, "大数据": 1}, {"发展": ["vn"]})
    both = mine.union(theirs)
    assert both.counts == {"发展": 4, "人民": 3, "中国": 1, "大数据": 1}
    assert both.tags == {"发展": {"v", "vn"}}   # 人民 untagged in theirs: any tag


def test_matches_are_every_multi_character_entry_found():
    lexicon = Lexicon.from_counts({"中国": 1, "中国人": 1, "人民": 2, "民": 1, "国人民": 1})
    text = "中国人民中国"
    expected = sorted((a, b) for a in range(len(text)) for b in range(a + 2, len(text) + 1)
                      if text[a:b] in lexicon)
    assert sorted(lexicon.matches(text)) == expected == [(0, 2), (0, 3), (1, 4), (2, 4), (4, 6)]


def test_a_lexicon_file_round_trips_and_jieba_reads_it(tmp_path):
    lexicon = Lexicon.from_counts({"人民": 7, "中国": 7, "的": 30, "改革开放": 1},
                                  {"中国": ["ns"], "改革开放": ["v", "vn"]})
    path = write_lexicon(tmp_path / "lexicon.txt", lexicon)
    assert path.read_text(encoding="utf-8").splitlines() == ["的 30", "中国 7 ns", "人民 7",
                                                             "改革开放 1 v,vn"]
    again = read_lexicon(path)
    assert (again.counts, again.tags) == (lexicon.counts, lexicon.tags)
    jieba = pytest.importorskip("jieba")
    tokenizer = jieba.Tokenizer(dictionary=str(path))
    assert tokenizer.lcut("改革开放的中国", HMM=False) == ["改革开放", "的", "中国"]


def test_read_lexicon_formats_and_errors(tmp_path):
    good = tmp_path / "user.txt"
    good.write_text("云计算\n区块链 12\n\n大数据 3 n\n云计算 2\n大数据 1 vn,n\n", encoding="utf-8")
    assert read_lexicon(good).counts == {"云计算": 3, "区块链": 12, "大数据": 4}
    assert read_lexicon(good).tags == {"大数据": {"n", "vn"}}
    bad = tmp_path / "bad.txt"
    bad.write_text("云计算\n区块链 many\n", encoding="utf-8")
    with pytest.raises(MinitfError, match=r"bad.txt:2: expected `word`, `word count`"):
        read_lexicon(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(MinitfError, match="no words in it"):
        read_lexicon(empty)
    with pytest.raises(MinitfError, match="no such dictionary file"):
        read_lexicon(tmp_path / "missing.txt")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("云计算".encode("gb18030") + b"\n")
    with pytest.raises(MinitfError, match="not utf-8 text"):
        read_lexicon(latin)


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    root = tmp_path_factory.mktemp("lexicon")
    corpus = make_corpus(root)
    train(corpus, "segment", root / "run", epochs=3)
    return corpus, root / "run"


def test_finetune_writes_the_training_words_and_picks_a_weight(segmenter):
    corpus, run = segmenter
    words = {w for line in (corpus / "train.words").read_text(encoding="utf-8").splitlines()
             for w in line.split()}
    for checkpoint in ("best", "last"):
        assert set(read_lexicon(run / checkpoint / "lexicon.txt").counts) == words
    config = json.loads((run / "best" / "config.json").read_text(encoding="utf-8"))
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    picked = next(r for r in records if r["type"] == "lexicon")
    assert config["minitf_lexicon_weight"] == picked["chosen"]
    assert picked["scores"][str(float(picked["chosen"]))] == max(picked["scores"].values())
    transformers = pytest.importorskip("transformers")
    loaded = transformers.AutoModelForTokenClassification.from_pretrained(run / "best")
    assert loaded.config.num_labels == 4


def test_without_validation_the_decoder_uses_the_default_weight(tmp_path):
    corpus = make_corpus(tmp_path)
    cfg = FinetuneConfig(task="tag", model=str(corpus / "model"), train=str(corpus / "train.pd"),
                         validation_fraction=0.0, output=str(tmp_path / "run"), epochs=1,
                         batch_size=16, lr=3e-3, max_length=16, progress="off")
    finetune(cfg)
    for checkpoint in ("best", "last"):
        directory = tmp_path / "run" / checkpoint
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        assert "minitf_lexicon_weight" not in config
        tagger = TokenTagger.from_pretrained(directory)
        assert tagger.uses_lexicon and tagger.lexicon_weight == DEFAULT_LEXICON_WEIGHT
        assert tagger.lexicon.tags["中国"] == {"ns"}   # a tagger's lexicon keeps the tags
    assert TokenTagger.from_pretrained(directory, lexicon_weight=0.0).uses_lexicon is False


def test_a_user_dictionary_word_comes_out_whole(segmenter, tmp_path, capsys):
    corpus, run = segmenter
    text = "我们的是了和"   # no training word covers 是了和
    base = ["segment", "--model", str(run / "best"), text]
    assert main([*base, "--lexicon-weight", "0"]) == 0
    plain = capsys.readouterr().out.split()
    assert "".join(plain) == text
    user = tmp_path / "user.txt"
    user.write_text("是了和\n", encoding="utf-8")
    assert main([*base, "--lexicon", str(user), "--lexicon-weight", "1000"]) == 0
    assert capsys.readouterr().out.split() == ["我们", "的", "是了和"]
    assert main([*base, "--lexicon", str(user), "--lexicon-weight", "0"]) == 0
    assert capsys.readouterr().out.split() == plain


@pytest.mark.parametrize("flags, message", [
    (["--lexicon-weight", "-1"], "--lexicon-weight -1.0: must be 0 or more"),
    (["--lexicon", "{bad}"], "bad.txt:1: expected"),
])
def test_bad_lexicon_flags_are_one_clear_error(segmenter, tmp_path, capsys, flags, message):
    _, run = segmenter
    bad = tmp_path / "bad.txt"
    bad.write_text("a b c d\n", encoding="utf-8")
    flags = [f.replace("{bad}", str(bad)) for f in flags]
    assert main(["segment", "--model", str(run / "best"), "我们", *flags]) != 0
    assert message in capsys.readouterr().err
