"""`minitf tokenizer train --model-type characters`: a WordPiece vocabulary of single characters
(as bert-base-chinese), checked against transformers' BertTokenizer on the same directory."""

from __future__ import annotations

import pytest

from minitf.cli import main as cli_main
from minitf.errors import MinitfError
from minitf.tokenizers.training import train_sentencepiece
from minitf.tokenizers.wordpiece import load_tokenizer

DOCUMENTS = ["1998年，中国人民解放军在北京举行了庆祝活动。", "今天天气很好！Hello World 2026",
             "我们的生活越来越好了，北京欢迎你。", "中国人民的朋友遍天下"] * 3
PROBES = ["中国人民1998年很好！", "Hello, 北京 world", "生僻字龘出现", "  ", "ÉCOLE 法国"]


@pytest.fixture(scope="module")
def characters(tmp_path_factory):
    out = tmp_path_factory.mktemp("chars") / "tok"
    train_sentencepiece(DOCUMENTS, out, vocab_size=8000, model_type="characters",
                        character_coverage=1.0)
    return out


def test_every_character_is_one_piece_and_other_letters_continue(characters):
    tok = load_tokenizer(characters)
    assert tok.tokenize("中国人民") == ["中", "国", "人", "民"]
    assert tok.tokenize("1998年") == ["1", "##9", "##9", "##8", "年"]
    assert tok.tokenize("龘") == ["[UNK]"]            # never seen
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                          "[MASK]"]


def test_transformers_gives_the_same_ids(characters):
    transformers = pytest.importorskip("transformers")
    theirs = transformers.AutoTokenizer.from_pretrained(characters)
    ours = load_tokenizer(characters)
    for text in PROBES:
        assert ours(text)["input_ids"][0].tolist() == theirs(text)["input_ids"], text


def test_vocab_size_keeps_the_most_frequent_characters(tmp_path):
    documents = ["中中中中国国国人人民", "中国"]     # 中 5, 国 4, 人 2, 民 1
    train_sentencepiece(documents, tmp_path / "small", vocab_size=5 + 2,
                        model_type="characters", character_coverage=1.0)
    assert load_tokenizer(tmp_path / "small").tokenize("中国人民") == ["中", "国", "[UNK]",
                                                                      "[UNK]"]
    train_sentencepiece(documents, tmp_path / "covered", model_type="characters",
                        character_coverage=0.9)   # 中 国 人 cover 11 of 12 characters
    assert load_tokenizer(tmp_path / "covered").tokenize("人民") == ["人", "[UNK]"]


def test_command_line_and_refusals(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(DOCUMENTS) + "\n", encoding="utf-8")
    assert cli_main(["tokenizer", "train", "--input", str(corpus), "--model-type", "characters",
                     "--output", str(tmp_path / "tok")]) == 0
    assert "characters" in capsys.readouterr().out
    assert load_tokenizer(tmp_path / "tok").tokenize("北京") == ["北", "京"]
    with pytest.raises(MinitfError, match="strip-accents"):
        train_sentencepiece(DOCUMENTS, tmp_path / "x", model_type="characters",
                            strip_accents=True)
    with pytest.raises(MinitfError, match="not empty"):
        train_sentencepiece(DOCUMENTS, tmp_path / "tok", model_type="characters")
